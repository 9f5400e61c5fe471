"""`llmkd distill` through its argparse entry (`add_distill_parser` + `run_distill`): an offline run on a CSV writes a report
whose numbers follow from the files it wrote; an LLM dry run sends nothing; a resumed run pays only for new texts."""
import argparse, json
from collections import Counter
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from fastai.learner import load_learner
from llmkd.core import InputError
from llmkd.distill import add_distill_parser, run_distill, predict_texts
from llmkd.pseudolabel import bbc_news
from llmkd.testing import LLMServer


def parse(*argv):
    p = argparse.ArgumentParser(prog='llmkd')
    add_distill_parser(p.add_subparsers(dest='command'))
    return p.parse_args(['distill', *argv])


@pytest.fixture(scope='module')
def csv(tmp_path_factory):
    "120 BBC articles of two topics; gold labels on 40 of them (the evaluation rows), none on the pool"
    df = bbc_news().drop_duplicates('text')   # BBC News repeats a few articles: one text, one request
    df = pd.concat([df[df.label == 'sport'].iloc[:60], df[df.label == 'business'].iloc[:60]]).sample(frac=1, random_state=0)
    df = df.assign(topic=[l if i % 3 == 0 else None for i, l in enumerate(df.label)]).rename(columns={'text': 'article'})
    path = tmp_path_factory.mktemp('data')/'news.csv'
    df[['article', 'topic', 'label']].to_csv(path, index=False)
    return path


def test_offline_run_writes_a_report_the_files_confirm(csv, tmp_path, capsys):
    labels = json.dumps({'sport': 'Sport news: football, rugby, tennis, matches and players.',
                         'business': 'Business news: companies, markets, shares and the economy.'})
    rep = run_distill(parse('--csv', str(csv), '--text-col', 'article', '--gold-col', 'topic', '--labels', labels,
                            '--out', str(tmp_path/'out'), '--epochs', '8'))
    assert 'student macro-F1 on 40 gold rows' in capsys.readouterr().out
    df, pl = pd.read_csv(csv), pd.read_csv(tmp_path/'out'/'pseudo_labels.csv')
    ev = df.topic.notna()
    assert (rep.n_eval, rep.n_pool) == (40, 80)
    student = load_learner(tmp_path/'out'/'student.pkl')
    pred = predict_texts(student, df.article[ev].tolist()).label
    assert rep.student_f1 == pytest.approx(f1_score(df.topic[ev], pred, average='macro'))
    assert rep.teacher_f1 == pytest.approx(f1_score(df.topic[ev], pl.label[ev], average='macro'))
    assert rep.student_f1 > 0.8 and 0 < rep.pool_used <= 1 and rep.teacher_requests == 0
    assert json.loads((tmp_path/'out'/'report.json').read_text())['n_pool'] == 80


def test_llm_dry_run_pays_nothing_and_a_resumed_run_pays_only_new_texts(csv, tmp_path, monkeypatch):
    monkeypatch.setenv('LLMKD_CACHE_DIR', str(tmp_path/'cache'))
    def respond(body):
        t = body['messages'][-1]['content'].lower()
        return '{"label": "%s"}' % ('sport' if any(w in t for w in ('match', 'win', 'cup', 'coach', 'player')) else 'business')
    base = ('--csv', str(csv), '--text-col', 'article', '--gold-col', 'topic', '--labels', 'sport,business', '--teacher', 'llm',
            '--model', 'test-model', '--epochs', '3')
    half = tmp_path/'half.csv'
    pd.read_csv(csv).iloc[:60].to_csv(half, index=False)
    with LLMServer(respond) as srv:
        est = run_distill(parse(*base, '--base-url', srv.base_url, '--out', str(tmp_path/'o'), '--dry-run'))
        assert (est['requests'], len(srv.requests)) == (120, 0)
        run_distill(parse(*base[:1], str(half), *base[2:], '--base-url', srv.base_url, '--out', str(tmp_path/'o1')))
        assert len(srv.requests) == 60                      # an interrupted job that labelled the first 60 texts
        est = run_distill(parse(*base, '--base-url', srv.base_url, '--out', str(tmp_path/'o'), '--dry-run'))
        assert (est['requests'], est['cache_hits']) == (60, 60)
        rep = run_distill(parse(*base, '--base-url', srv.base_url, '--out', str(tmp_path/'o2')))
        assert len(srv.requests) == 120 and rep.teacher_requests == 60   # the rerun paid only for the other 60


def test_bad_csv_is_refused_before_any_request(tmp_path):
    pd.DataFrame({'article': ['A late goal won the cup.', None]}).to_csv(tmp_path/'bad.csv', index=False)
    with LLMServer() as srv:
        with pytest.raises(InputError, match="column 'article' holds 1 missing"):
            run_distill(parse('--csv', str(tmp_path/'bad.csv'), '--text-col', 'article', '--labels', 'sport,business', '--teacher', 'llm',
                              '--model', 'm', '--base-url', srv.base_url, '--out', str(tmp_path/'o')))
        with pytest.raises(InputError, match='at least two'):
            run_distill(parse('--csv', str(tmp_path/'bad.csv'), '--text-col', 'article', '--labels', 'sport', '--out', str(tmp_path/'o')))
        assert len(srv.requests) == 0


def _topic(body):
    t = body['messages'][-1]['content'].lower()
    return '{"label": "%s"}' % ('sport' if any(w in t for w in ('match', 'win', 'cup', 'coach', 'player')) else 'business')


def test_dry_run_prints_online_and_batch_price_and_sends_nothing(tmp_path, capsys, monkeypatch):
    import re
    from llmkd.batch import BatchServer
    monkeypatch.setenv('LLMKD_CACHE_DIR', str(tmp_path/'cache'))
    csv = tmp_path/'reviews.csv'
    csv.write_text('text\n"A warm, funny film."\n"Dull and far too long."\n"The cast is superb."\n')
    args = ('--csv', str(csv), '--labels', 'pos,neg', '--teacher', 'llm', '--model', 'm', '--out', str(tmp_path/'o'), '--dry-run')
    with BatchServer() as srv:
        run_distill(parse(*args, '--base-url', srv.base_url, '--price-prompt', '0.15', '--price-completion', '0.6', '--batch'))
        out = capsys.readouterr().out
        run_distill(parse(*args, '--base-url', srv.base_url))
        assert 'cost unknown (give --price-prompt and --price-completion)' in capsys.readouterr().out
        assert (srv.requests, srv.batch_rows, srv.files) == ([], [], {})
    m = re.search(r'estimate: 3 requests \(0 cached\), (\d+) prompt \+ (\d+) completion tokens, cost \$(\S+) online, \$(\S+) through batches', out)
    assert m, out
    online = (int(m[1])*0.15 + int(m[2])*0.6) / 1e6       # USD per 1M tokens, from the printed token counts
    assert float(m[3]) == pytest.approx(online, rel=1e-3) and float(m[4]) == pytest.approx(online/2, rel=1e-3)


def test_batch_run_labels_through_batches_like_online(csv, tmp_path, monkeypatch):
    "`--batch` against BatchServer: one online request (the one-text logprob probe), 119 rows in batches, labels as online"
    from llmkd.batch import BatchServer
    base = ('--csv', str(csv), '--text-col', 'article', '--gold-col', 'topic', '--labels', 'sport,business', '--teacher', 'llm',
            '--model', 'test-model', '--epochs', '2', '--price-prompt', '0.15', '--price-completion', '0.6')
    with BatchServer(_topic) as srv:
        monkeypatch.setenv('LLMKD_CACHE_DIR', str(tmp_path/'cb'))
        rep = run_distill(parse(*base, '--base-url', srv.base_url, '--out', str(tmp_path/'b'), '--batch', '--poll-interval', '0.01'))
        assert len(srv.requests) == 1 and srv.requests[0]['logprobs']
        assert sorted(Counter(srv.batch_rows).values()) == [1]*119
        assert (rep.teacher_requests, rep.teacher_batch_requests) == (1, 119) and rep.teacher_batch_cost > 0
        srv.reset()
        monkeypatch.setenv('LLMKD_CACHE_DIR', str(tmp_path/'co'))
        run_distill(parse(*base, '--base-url', srv.base_url, '--out', str(tmp_path/'o')))
        assert len(srv.requests) == 120 and srv.batch_rows == []
    assert pd.read_csv(tmp_path/'b'/'pseudo_labels.csv').equals(pd.read_csv(tmp_path/'o'/'pseudo_labels.csv'))
    with pytest.raises(InputError, match='poll_interval'):
        run_distill(parse(*base, '--base-url', srv.base_url, '--out', str(tmp_path/'x'), '--batch', '--poll-interval', '-1'))
    with pytest.raises(InputError, match=r'use an LLM teacher \(--teacher llm\)'):
        run_distill(parse('--csv', str(csv), '--text-col', 'article', '--labels', 'sport,business', '--out', str(tmp_path/'y'), '--batch'))


def test_transformer_student_cli_run_exports_a_learner_that_predicts_as_before(tmp_path, monkeypatch, capsys):
    "`--student transformer` on a 40-row CSV: report.json has the embedding run's fields, student.pkl reloads and labels as the trained learner did"
    import llmkd.distill as ld
    df = bbc_news().drop_duplicates('text')
    df = pd.concat([df[df.label == 'sport'].iloc[:20], df[df.label == 'business'].iloc[:20]]).sample(frac=1, random_state=1)
    df = df.assign(gold=[l if i % 4 == 0 else None for i, l in enumerate(df.label)])[['text', 'gold']]
    df.to_csv(tmp_path/'tiny.csv', index=False)
    ev = df.gold.notna().to_numpy()
    seen = {}
    def spy(learn, path, classes, **kw):   # the trained learner's labels just before it is exported
        seen['before'] = ld.predict_texts(learn, df.text[ev].tolist()).label.tolist()
        return export(learn, path, classes, **kw)
    export = ld.export_student
    monkeypatch.setattr(ld, 'export_student', spy)
    rep = run_distill(parse('--csv', str(tmp_path/'tiny.csv'), '--gold-col', 'gold', '--labels', 'sport,business', '--student', 'transformer',
                            '--max-len', '32', '--epochs', '1', '--out', str(tmp_path/'out')))
    assert 'student (transformer)' in capsys.readouterr().out
    js = json.loads((tmp_path/'out'/'report.json').read_text())
    assert (js['student'], js['n_pool'], js['n_eval'], js['classes']) == ('transformer', 30, 10, ['sport', 'business'])
    assert js['learner'] == str(tmp_path/'out'/'student.pkl') and 0 < js['pool_used'] <= 1 and js['student_s_per_1000'] > 0
    student = load_learner(tmp_path/'out'/'student.pkl')
    after = predict_texts(student, df.text[ev].tolist()).label.tolist()
    assert after == seen['before']
    assert js['student_f1'] == pytest.approx(f1_score(df.gold[ev], after, average='macro'))
    assert len(student.dls.train.dataset) == 0 and student.dls.vocab == ['sport', 'business']   # no training texts in the pickle
    assert rep.student_f1 == js['student_f1']


def test_student_options_are_checked_before_any_request(tmp_path):
    with pytest.raises(SystemExit): parse('--student', 'bert')
    with LLMServer() as srv:
        with pytest.raises(InputError, match='max_len'):
            run_distill(parse('--labels', 'sport,business', '--teacher', 'llm', '--model', 'm', '--base-url', srv.base_url,
                              '--student', 'transformer', '--max-len', '0', '--out', str(tmp_path/'o')))
        assert len(srv.requests) == 0
