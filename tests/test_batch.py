"Batch labeling over real HTTP against BatchServer: round trip, SIGKILL and resume, failed rows, vLLM-format import."
import json, os, signal, sqlite3, subprocess, sys, textwrap, time
from collections import Counter
from pathlib import Path

import pytest
from pydantic import BaseModel

from llmkd.teacher import Teacher
from llmkd.testing import LLMServer, chat_completion
from llmkd.batch import (BatchServer, BatchJobs, BatchTeacher, prefill_batch, export_batch, import_batch_output, batch_requests,
                         batch_costs, BatchError)

SECRET = 'sk-llmkd-test-SECRET-0123456789'
ITEMS = [f'text number {i} about {"sport" if i % 3 else "tech"}' for i in range(1000)]


class Topic(BaseModel):
    label: str


def answer(body):
    "Deterministic structured answer read off the prompt"
    return json.dumps({'label': 'tech' if body['messages'][-1]['content'].endswith('tech') else 'sport'})


def teacher(srv, path, **kw): return Teacher('test-model', srv.base_url, api_key=SECRET, cache_dir=path, backoff=0.001, max_backoff=0.01, **kw)


def uploaded(srv):
    "Request lines of every file uploaded for a batch"
    return [json.loads(l) for f in srv.files.values() if f['purpose'] == 'batch' for l in f['_data'].splitlines()]


def n_answers(path):
    con = sqlite3.connect(path)
    try: return con.execute('SELECT COUNT(*) FROM answers').fetchone()[0]
    except sqlite3.OperationalError: return 0
    finally: con.close()


ASK = dict(schema=Topic, logprobs=True, top_logprobs=3, temperature=0)


def test_round_trip_1000_equals_online(tmp_path):
    with BatchServer(answer) as srv:
        t = teacher(srv, tmp_path/'batch')
        rep = prefill_batch(t, ITEMS, poll_interval=0.01, max_requests=300, **ASK)
        assert (rep.items, rep.submitted, rep.imported, rep.failed, len(rep.batches)) == (1000, 1000, 1000, {}, 4)
        got = t.map(ITEMS, progress=False, **ASK)
        assert srv.requests == []                                   # not one online request
        assert sorted(Counter(srv.batch_rows).values()) == [1]*1000  # every request submitted exactly once
        online = teacher(srv, tmp_path/'online').map(ITEMS, progress=False, **ASK)
        assert len(srv.requests) == 1000
    # the batch bodies are the very requests the online path sent
    assert sorted(json.dumps(l['body'], sort_keys=True) for l in uploaded(srv)) == sorted(json.dumps(r, sort_keys=True) for r in srv.requests)
    assert [a.parsed for a in got] == [a.parsed for a in online] and [a.text for a in got] == [a.text for a in online]
    assert [a.logprobs for a in got] == [a.logprobs for a in online]
    assert all(a.cached for a in got) and got[0].parsed == Topic(label='tech')


def test_batch_cost_is_half_and_reported(tmp_path):
    prices = {'prompt': 2., 'completion': 8.}
    with BatchServer(answer) as srv:
        t = teacher(srv, tmp_path, prices=prices)
        est = t.dry_run(ITEMS[:10], max_tokens=5)
        costs = batch_costs(est)
        rep = prefill_batch(t, ITEMS[:10], poll_interval=0.01)
    assert costs['batch'] == pytest.approx(est.cost/2)
    pt, ct = rep.usage.prompt_tokens, rep.usage.completion_tokens
    assert pt == sum(len(s.split()) for s in ITEMS[:10])   # these prompts are plain words: one token each
    assert ct == 9*10          # each answer {"label": "sport"} is 9 tokens to llmkd's counter: { " label " : " sport " }
    assert rep.usage.cost == pytest.approx((pt*2 + ct*8)/1e6/2)


CHILD = textwrap.dedent(f'''
    import sys
    from llmkd.teacher import Teacher
    from llmkd.batch import prefill_batch
    url, cache = sys.argv[1], sys.argv[2]
    items = [f'text number {{i}} about {{"sport" if i % 3 else "tech"}}' for i in range(1000)]
    t = Teacher('test-model', url, api_key={SECRET!r}, cache_dir=cache)
    rep = prefill_batch(t, items, poll_interval=0.02, max_poll_interval=0.05, max_requests=100, logprobs=True)
    print(len(rep.failed), rep.pending, rep.submitted, rep.resumed)
''')


def _run_and_kill(srv, cache, until, limit=60):
    "Start the batch driver in a subprocess, SIGKILL it as soon as `until()` holds"
    p = subprocess.Popen([sys.executable, '-c', CHILD, srv.base_url, str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while not until():
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        assert time.monotonic() - t0 < limit, 'the child never reached the kill point'
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL


def _resume_and_check(srv, cache):
    t = teacher(srv, cache)
    rep = prefill_batch(t, ITEMS, poll_interval=0.02, max_requests=100, logprobs=True)
    keys = [k for k, _ in batch_requests(t, ITEMS, logprobs=True)]
    counts = Counter(srv.batch_rows)
    assert set(counts) == set(keys) and max(counts.values()) == 1   # zero submitted twice, zero lost
    assert rep.failed == {} and n_answers(cache/'teacher.sqlite') == 1000
    got = t.map(ITEMS, progress=False, logprobs=True)
    assert srv.requests == [] and [a.text for a in got] == ITEMS
    return rep


def test_sigkill_while_submitting_then_resume(tmp_path):
    "Killed between uploads and creates: the rerun finishes the half-done submissions and adds the missing batches"
    with BatchServer(step=0.05, api_latency=0.2) as srv:
        _run_and_kill(srv, tmp_path, lambda: len(srv.batches) >= 3)
        created = len(srv.batches)
        assert created < 10
        srv.api_latency = 0
        rep = _resume_and_check(srv, tmp_path)
        assert len(srv.batches) == 10 and rep.resumed >= 100*created and rep.resumed + rep.submitted == 1000


def test_sigkill_while_polling_then_resume(tmp_path):
    "Killed while waiting: five batches imported, five still running; the rerun polls those and submits nothing"
    with BatchServer(step=0.1) as srv:
        srv.inject_batch('slow', times=5, seconds=0.1).inject_batch('slow', times=5, seconds=60)   # the last five would take 3 minutes
        db = tmp_path/'teacher.sqlite'
        _run_and_kill(srv, tmp_path, lambda: n_answers(db) >= 500 and len(srv.batches) == 10)
        assert n_answers(db) == 500
        jobs = BatchJobs(db); open_jobs = jobs.jobs(srv.base_url); jobs.close()
        assert len(open_jobs) == 5 and all(j['state'] == 'submitted' for j in open_jobs)
        for b in srv.batches.values(): b['_step'] = 0      # the provider finishes them while nobody polls
        rep = _resume_and_check(srv, tmp_path)
        assert (rep.submitted, rep.resumed, rep.imported, len(srv.batches)) == (0, 500, 500, 10)


def test_killed_while_creating_batch_is_adopted_not_resubmitted(tmp_path):
    "A job left in 'submitting' (killed after the provider created the batch) is found by its metadata"
    with BatchServer(step=10) as srv:
        t = teacher(srv, tmp_path)
        rep = prefill_batch(t, ITEMS[:50], poll_interval=0.01, timeout=0.05)
        assert rep.pending == 50 and len(srv.batches) == 1
        jobs = BatchJobs(t.cache.path)
        (j,) = jobs.jobs(t.base_url)
        jobs.con.execute("UPDATE llmkd_batches SET state='submitting', batch_id=NULL WHERE token=?", (j['token'],)); jobs.close()
        for b in srv.batches.values(): b['_step'] = 0
        rep = prefill_batch(t, ITEMS[:50], poll_interval=0.01)
        assert (len(srv.batches), rep.submitted, rep.resumed, rep.imported) == (1, 0, 50, 50)
        assert sorted(Counter(srv.batch_rows).values()) == [1]*50


@pytest.mark.parametrize('retry', ['online', 'batch', None])
def test_failed_rows_retried_and_reported(tmp_path, retry):
    with BatchServer(answer) as srv:
        srv.inject_batch('row_errors', times=10, every=7)
        t = teacher(srv, tmp_path)
        rep = prefill_batch(t, ITEMS, retry=retry, poll_interval=0.01, max_requests=100)
        # the rows the server failed, read independently from the uploaded files: index % 7 == 0 of each of the 10 batches
        first = [json.loads(l)['custom_id'] for f in list(srv.files.values()) if f['purpose'] == 'batch'
                 for i, l in enumerate(f['_data'].splitlines()) if i % 7 == 0][:150]
        assert len(first) == 150 and len(set(first)) == 150
        if retry is None:
            assert set(rep.failed) == set(first) and n_answers(t.cache.path) == 850 and srv.requests == []
            assert set(rep.failed.values()) == {'HTTP 500: server_error: The server had an error while processing your request (injected fault)'}
        elif retry == 'online':
            assert (rep.retried_online, rep.failed, len(srv.requests)) == (150, {}, 150)
            assert sorted(json.dumps(r, sort_keys=True) for r in srv.requests) == sorted(
                json.dumps(l['body'], sort_keys=True) for l in uploaded(srv) if l['custom_id'] in set(first))
        else:
            assert (rep.retried_batch, rep.failed, srv.requests) == (150, {}, [])
            assert Counter(Counter(srv.batch_rows).values()) == Counter({1: 850, 2: 150})
        if retry is not None:
            got = t.map(ITEMS, progress=False)
            assert n_answers(t.cache.path) == 1000 and len(srv.requests) == (150 if retry == 'online' else 0)
            assert [a.text for a in got] == [answer({'messages': [{'content': s}]}) for s in ITEMS]


def test_failed_and_expired_batches(tmp_path):
    with BatchServer(answer) as srv:
        t = teacher(srv, tmp_path)
        srv.inject_batch('fail').inject_batch('expire', done=30)
        rep = prefill_batch(t, ITEMS[:100], retry=None, poll_interval=0.01, max_requests=50)
        assert len(rep.failed) == 50 + 20 and n_answers(t.cache.path) == 30
        vals = list(rep.failed.values())
        assert sum(v.startswith('batch batch_') and ' failed (invalid_request: ' in v for v in vals) == 50
        assert sum(v.startswith('batch_expired: ') for v in vals) == 20
        rep = prefill_batch(t, ITEMS[:100], retry=None, poll_interval=0.01, max_requests=50)   # a rerun sends only the 70
        assert (rep.cached, rep.submitted, rep.failed) == (30, 70, {})


def test_export_vllm_output_import_then_map_and_pseudo_label_offline(tmp_path):
    "JSONL exported by llmkd -> an output file in `vllm run-batch`'s format -> import -> zero online requests"
    from llmkd.pseudolabel import pseudo_label, label_prompt, label_schema
    classes = ['sport', 'tech']
    convs = [label_prompt(s, classes) for s in ITEMS[:200]]
    kw = dict(schema=label_schema(classes), n=1, temperature=0, logprobs=True, top_logprobs=10)   # pseudo_label's 'logprob' request
    with LLMServer(answer) as srv:
        t = teacher(srv, tmp_path)
        ex = export_batch(t, ITEMS, tmp_path/'in.jsonl', max_requests=400, logprobs=True)
        ex2 = export_batch(t, convs, tmp_path/'pl.jsonl', **kw)
        assert (ex.requests, len(ex.files), ex2.requests) == (1000, 3, 200)
        out = tmp_path/'out.jsonl'
        with open(out, 'w') as f:                    # what `vllm run-batch -i in.jsonl -o out.jsonl` writes
            for p in ex.files + ex2.files:
                for i, line in enumerate(p.read_text().splitlines()):
                    row = json.loads(line)
                    body = chat_completion(row['body'], answer(row['body']))
                    body.update(id=f'chatcmpl-{i}', prompt_logprobs=None, kv_transfer_params=None, system_fingerprint=None)
                    for c in body['choices']: c['message'].update(reasoning_content=None, tool_calls=[]); c['stop_reason'] = None
                    err = p.name == 'in.0001.jsonl' and i == 5
                    f.write(json.dumps({'id': f'vllm-{i}', 'custom_id': row['custom_id'], 'error': 'CUDA out of memory' if err else None,
                                        'response': {'status_code': 400 if err else 200, 'request_id': f'vllm-batch-{i}',
                                                     'body': None if err else body}}) + '\n')
        rep = import_batch_output(t, out)
        assert (rep.imported, len(rep.errors), rep.bad_lines) == (1199, 1, 0)
        assert list(rep.errors.values()) == ['HTTP 400: CUDA out of memory']
        got = t.map(ITEMS, progress=False, logprobs=True)
        assert len(srv.requests) == 1 and srv.requests[0]['messages'][0]['content'] == ITEMS[405]   # only the error row goes online
        assert [a.text for a in got] == [answer({'messages': [{'content': s}]}) for s in ITEMS]
        srv.reset()
        df = pseudo_label(ITEMS[:200], classes, teacher=t, top_logprobs=10, progress=False)
        assert srv.requests == []
        assert df.label.tolist() == ['tech' if i % 3 == 0 else 'sport' for i in range(200)]
        assert df.confidence_source.str.startswith('logprob').all()
        online = pseudo_label(ITEMS[:200], classes, teacher=teacher(srv, tmp_path/'online'), top_logprobs=10, progress=False)
        assert len(srv.requests) == 200
        assert df.drop(columns='answer').equals(online.drop(columns='answer'))


def test_batch_teacher_pseudo_label_and_timeout(tmp_path):
    from llmkd.pseudolabel import pseudo_label
    with BatchServer(answer, step=5) as srv:
        bt = BatchTeacher(teacher(srv, tmp_path), poll_interval=0.01, timeout=0.1)
        with pytest.raises(BatchError, match='still in batches'): pseudo_label(ITEMS[:20], ['sport', 'tech'], teacher=bt, progress=False)
        for b in srv.batches.values(): b['_step'] = 0
        bt.batch_kwargs['timeout'] = None
        df = pseudo_label(ITEMS[:20], ['sport', 'tech'], teacher=bt, progress=False)
        assert srv.requests == [] and max(Counter(srv.batch_rows).values()) == 1
        assert df.label.tolist() == ['tech' if i % 3 == 0 else 'sport' for i in range(20)]


def test_no_secret_in_cache_files_or_batches(tmp_path):
    with BatchServer(answer) as srv:
        t = teacher(srv, tmp_path)
        prefill_batch(t, ITEMS[:20], poll_interval=0.01, keep_files=True)
        export_batch(t, ITEMS[20:30], tmp_path/'x.jsonl')
    files = [p for p in tmp_path.rglob('*') if p.is_file()]
    assert any(p.suffix == '.jsonl' for p in files)
    assert not any(SECRET.encode() in p.read_bytes() for p in files)
    assert not any(SECRET.encode() in f['_data'] for f in srv.files.values())


def test_bad_arguments_fail_before_any_request(tmp_path):
    with BatchServer(answer) as srv:
        t = teacher(srv, tmp_path)
        with pytest.raises(ValueError, match="retry must be 'online', 'batch' or None"): prefill_batch(t, ITEMS[:3], retry='later')
        with pytest.raises(ValueError, match='has no disk cache'): prefill_batch(teacher(srv, tmp_path, cache=False), ITEMS[:3])
        assert (srv.requests, srv.batches, srv.files) == ([], {}, {})


def test_follow_ups_reasks_and_n_top_ups_go_through_batches(tmp_path):
    "Invalid first answers are re-asked, and a server ignoring `n` is topped up, in further batches: zero online requests"
    flaky = lambda b: answer(b) if len(b['messages']) > 1 else 'not JSON'
    with BatchServer(flaky) as srv:
        t = teacher(srv, tmp_path/'a')
        rep = prefill_batch(t, ITEMS[:40], schema=Topic, poll_interval=0.01)
        got = t.map(ITEMS[:40], schema=Topic, progress=False)
        assert (rep.submitted, rep.follow_ups, len(srv.batch_rows), srv.requests) == (40, 40, 80, [])
        online = teacher(srv, tmp_path/'b').map(ITEMS[:40], schema=Topic, progress=False)
        assert len(srv.requests) == 80 and [a.parsed for a in got] == [a.parsed for a in online]
    with BatchServer(lambda b: ['one choice only']) as srv:      # ignores n: one choice per request
        t = teacher(srv, tmp_path/'c')
        rep = prefill_batch(t, ITEMS[:10], n=3, poll_interval=0.01)
        got = t.map(ITEMS[:10], n=3, progress=False)
        assert (rep.submitted, rep.follow_ups, srv.requests) == (10, 20, [])
        assert [len(a.choices) for a in got] == [3]*10 and sorted(r.get('n', 1) for r in (l['body'] for l in uploaded(srv))) == [1]*10 + [2]*10 + [3]*10


def test_elicit_attributions_through_batches_equals_online(tmp_path):
    "elicit_attributions with a BatchTeacher: the n-choice structured requests go through a batch, none online"
    import re
    from llmkd.priors import TaskDescription, elicit_attributions
    known = {'age': 7, 'smoker': 8, 'bmi': -2}
    def expert(body):
        feats = re.findall(r'^\d+\. ([^:]+):', body['messages'][-1]['content'], flags=re.M)
        return [json.dumps({'reasoning': 'age and smoking', 'scores': {f: known[f] for f in feats}})] * (body.get('n') or 1)
    task = TaskDescription('Predict whether a patient is sick.', {'age': 'age in years', 'smoker': 'smokes (1) or not (0)',
                                                                  'bmi': 'body-mass index'}, ['no', 'yes'])
    with BatchServer(expert) as srv:
        prior = elicit_attributions(task, BatchTeacher(teacher(srv, tmp_path/'a'), poll_interval=0.01), n_estimates=3, progress=False)
        assert (srv.requests, len(srv.batch_rows)) == ([], 1)
        online = elicit_attributions(task, teacher(srv, tmp_path/'b'), n_estimates=3, progress=False)
        assert len(srv.requests) == 1 and srv.requests[0] == uploaded(srv)[0]['body']
    assert (prior.estimates == online.estimates).all() and prior.estimates[:, 0, 0].tolist() == [7, 7, 7]


def test_endpoint_without_batches_fails_clearly_without_key(tmp_path):
    with LLMServer(answer) as srv:                      # online only: /v1/files answers 404
        t = teacher(srv, tmp_path)
        with pytest.raises(BatchError) as ei: prefill_batch(t, ITEMS[:5], poll_interval=0.01)
        assert 'may not serve /v1/files' in str(ei.value) and 'HTTP 404' in str(ei.value) and SECRET not in str(ei.value)
        assert srv.requests == []


@pytest.mark.parametrize('kw, msg', [(dict(poll_interval=float('nan')), 'poll_interval (seconds) must be a finite number'),
                                     (dict(poll_interval=5, max_poll_interval=1), 'max_poll_interval (seconds) must be a finite number in [5'),
                                     (dict(max_rounds=1.5), 'max_rounds must be a finite integer'),
                                     (dict(discount=2), 'discount (batch price / online price) must be a finite number in [0, 1]'),
                                     (dict(timeout=-1), 'timeout (seconds) must be a finite number')])
def test_bad_waits_fail_before_any_call(tmp_path, kw, msg):
    with BatchServer(answer) as srv:
        with pytest.raises(ValueError) as ei: prefill_batch(teacher(srv, tmp_path), ITEMS[:3], **kw)
        assert msg in str(ei.value) and (srv.requests, srv.files) == ([], {})


def test_batch_gone_at_the_endpoint_counts_as_failed_and_is_retried(tmp_path):
    with BatchServer(answer, step=10) as srv:
        t = teacher(srv, tmp_path)
        assert prefill_batch(t, ITEMS[:5], poll_interval=0.01, timeout=0.05).pending == 5
        srv.batches.clear()                                  # deleted on the provider's side
        rep = prefill_batch(t, ITEMS[:5], retry=None, poll_interval=0.01)
        assert (rep.submitted, len(rep.failed)) == (0, 5) and set(rep.failed.values()) == {'batch batch_2 not found at the endpoint'}
        rep = prefill_batch(t, ITEMS[:5], retry='online', poll_interval=0.01, timeout=0.05)   # a rerun submits them again
        assert (rep.submitted, rep.pending) == (5, 5)


def test_answers_that_never_validate_fail_as_online_without_online_requests(tmp_path):
    "Every answer invalid: the first request and max_reasks re-asks go in batches; map then raises as online would, sending nothing"
    from llmkd.teacher import StructuredOutputError
    with BatchServer(lambda b: 'not JSON') as srv:
        t = teacher(srv, tmp_path)
        rep = prefill_batch(t, ITEMS[:6], schema=Topic, max_reasks=2, poll_interval=0.01)
        assert (rep.submitted, rep.follow_ups, len(srv.batch_rows)) == (6, 12, 18)
        got = t.map(ITEMS[:6], schema=Topic, max_reasks=2, progress=False, return_exceptions=True)
        assert srv.requests == [] and all(isinstance(a, StructuredOutputError) for a in got)


def test_batch_teacher_online_below_sends_small_maps_online(tmp_path):
    from llmkd.pseudolabel import pseudo_label
    with BatchServer(answer) as srv:
        bt = BatchTeacher(teacher(srv, tmp_path), online_below=1, poll_interval=0.01)
        df = pseudo_label(ITEMS[:20], ['sport', 'tech'], teacher=bt, progress=False)
        assert (len(srv.requests), len(srv.batch_rows), len(srv.batches)) == (1, 19, 1)    # the one-text probe online, the rest in one batch
        assert df.label.tolist() == ['tech' if i % 3 == 0 else 'sport' for i in range(20)]
    with pytest.raises(ValueError, match='online_below must be a finite integer'): BatchTeacher(bt.teacher, online_below=-1)


def test_batch_bodies_follow_the_learned_structured_output_mode(tmp_path):
    "On a server that refuses json_schema the teacher falls back to json_object; batch bodies use the mode it learned"
    with BatchServer(answer, response_formats=('text', 'json_object')) as srv:
        t = teacher(srv, tmp_path)
        t.ask(ITEMS[0], schema=Topic)                          # learns json_object (one refused request, one answered)
        (key, body), = batch_requests(t, [ITEMS[1]], schema=Topic)
        assert body['response_format']['type'] == 'json_object'
        srv.reset()
        t.ask(ITEMS[1], schema=Topic)
        assert srv.requests == [body] and key in t.cache


def test_pseudo_label_mode_batch_equals_online_with_only_the_probe_online(tmp_path):
    "pseudo_label(mode='batch'): the chat rows go through /v1/batches, online only the one-text logprob probe; labels as online"
    from llmkd.pseudolabel import pseudo_label
    classes, texts = ['sport', 'tech'], ITEMS[:30]
    with BatchServer(answer) as srv:
        df = pseudo_label(texts, classes, teacher=teacher(srv, tmp_path/'b'), mode='batch', batch_options={'poll_interval': 0.01}, progress=False)
        assert len(srv.requests) == 1 and srv.requests[0]['logprobs'] and srv.requests[0]['messages'][-1]['content'].endswith(texts[0])
        assert sorted(Counter(srv.batch_rows).values()) == [1]*29                  # every other text once, in a batch
        assert sorted(l['body']['messages'][-1]['content'] for l in uploaded(srv)) == sorted(srv.requests[0]['messages'][-1]['content'].replace(texts[0], t) for t in texts[1:])
        srv.reset()
        online = pseudo_label(texts, classes, teacher=teacher(srv, tmp_path/'o'), progress=False)
        assert len(srv.requests) == 30 and srv.batch_rows == []
    assert df.label.tolist() == ['tech' if i % 3 == 0 else 'sport' for i in range(30)]
    assert df.drop(columns='answer').equals(online.drop(columns='answer'))


def test_pseudo_label_mode_batch_without_probe_and_bad_modes(tmp_path):
    "confidence='agreement' has no probe: zero online requests; bad modes and an offline teacher with mode='batch' fail before any request"
    from llmkd.pseudolabel import pseudo_label, EmbeddingTeacher
    from llmkd.core import InputError
    votes = lambda b: [answer(b)]*b.get('n', 1)
    with BatchServer(votes, logprobs=False) as srv:
        df = pseudo_label(ITEMS[:12], ['sport', 'tech'], teacher=teacher(srv, tmp_path), confidence='agreement', n_samples=3,
                          mode='batch', batch_options={'poll_interval': 0.01}, progress=False)
        assert srv.requests == [] and len(srv.batch_rows) == 12 and all(l['body']['n'] == 3 for l in uploaded(srv))
        assert df.label.tolist() == ['tech' if i % 3 == 0 else 'sport' for i in range(12)] and (df.confidence == 1).all()
        srv.reset()
        t = teacher(srv, tmp_path/'x')
        with pytest.raises(InputError, match="mode must be 'online' or 'batch'"): pseudo_label(ITEMS[:3], ['sport', 'tech'], teacher=t, mode='bulk')
        with pytest.raises(InputError, match="Unknown batch_options"):
            pseudo_label(ITEMS[:3], ['sport', 'tech'], teacher=t, mode='batch', batch_options={'poll': 1})
        with pytest.raises(InputError, match="poll_interval"):
            pseudo_label(ITEMS[:3], ['sport', 'tech'], teacher=t, mode='batch', batch_options={'poll_interval': -1})
        with pytest.raises(InputError, match="sends no request"):
            pseudo_label(ITEMS[:3], ['sport', 'tech'], teacher=EmbeddingTeacher(['sport', 'tech']), mode='batch')
        assert srv.requests == [] and srv.batch_rows == [] and srv.files == {}


def test_two_processes_on_one_cache_submit_each_row_once(tmp_path):
    "Two drivers started together on one cache: submission is serialised, so no row is submitted twice and both finish"
    with BatchServer(step=0.05, api_latency=0.1) as srv:
        ps = [subprocess.Popen([sys.executable, '-c', CHILD, srv.base_url, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(2)]
        reps = []
        for p in ps:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-2000:]
            reps.append(tuple(map(int, out.decode().split())))
        assert all(r[:2] == (0, 0) for r in reps)               # each returns with nothing failed or pending
        assert sorted(r[2] for r in reps) == [0, 1000]          # one submitted every row; the other found them submitted
        counts = Counter(srv.batch_rows)
        assert len(counts) == 1000 and max(counts.values()) == 1
        assert n_answers(tmp_path/'teacher.sqlite') == 1000 and srv.requests == []
