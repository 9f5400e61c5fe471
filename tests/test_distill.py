"""`llmkd distill` through its argparse entry (`add_distill_parser` + `run_distill`): an offline run on a CSV writes a report
whose numbers follow from the files it wrote; an LLM dry run sends nothing; a resumed run pays only for new texts."""
import argparse, json
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
