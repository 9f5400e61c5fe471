"Teacher against the real local LLMServer over HTTP: structured answers, retries, timeouts, cache, crash safety, secrets."
import json, logging, signal, subprocess, sys, textwrap, threading, time, traceback, warnings

import pytest
from pydantic import BaseModel

from llmkd.testing import LLMServer, prompt_tokens
from llmkd.teacher import (Teacher, Answer, Usage, TokenLogprob, AnswerCache, TeacherError, TeacherAPIError, MapError,
                           TeacherUnavailableError, TeacherTimeoutError, StructuredOutputError, endpoint_host, TeacherAuthError)

SECRET = 'sk-llmkd-test-SECRET-0123456789'


class Label(BaseModel):
    label: str
    confidence: float


def fast_teacher(srv, tmp_path=None, **kw):
    "A teacher with tiny backoff (tests only), the secret key and a temporary cache (or none)"
    kw = {'backoff': 0.001, 'max_backoff': 0.01, 'api_key': SECRET, **kw}
    if tmp_path is None: kw.setdefault('cache', False)
    else: kw.setdefault('cache_dir', tmp_path)
    return Teacher('test-model', srv.base_url, **kw)


@pytest.fixture
def srv():
    with LLMServer() as s: yield s


def test_schema_answer_parsed():
    with LLMServer(lambda b: '{"label": "sport", "confidence": 0.9}') as srv:
        a = fast_teacher(srv).ask('Label: "United won 2-0"', schema=Label)
    assert a.parsed == Label(label='sport', confidence=0.9)
    assert a.choices[0].parsed == a.parsed and a.text == '{"label": "sport", "confidence": 0.9}'
    rf = srv.requests[0]['response_format']
    assert rf['type'] == 'json_schema' and rf['json_schema']['schema'] == Label.model_json_schema()


def test_reask_after_malformed_json():
    bad, good = '{"label": "sport", "confidence": ', '{"label": "sport", "confidence": 0.6}'
    with LLMServer(lambda b: bad if len(b['messages']) == 1 else good) as srv:
        a = fast_teacher(srv).ask('Label: "United won"', schema=Label)
    assert a.parsed.confidence == 0.6
    assert len(srv.requests) == 2                          # the original request and exactly one re-ask
    first, follow = srv.requests
    assert first['messages'] == [{'role': 'user', 'content': 'Label: "United won"'}]
    assert follow['messages'][:2] == first['messages'] + [{'role': 'assistant', 'content': bad}]
    assert follow['messages'][2]['role'] == 'user' and 'no JSON object found' in follow['messages'][2]['content']
    assert follow['response_format'] == first['response_format']
    assert (a.usage.requests, a.usage.retries) == (2, 0)


def test_reask_with_validation_error_then_final_failure_shows_answer():
    with LLMServer(lambda b: '{"label": "sport"}') as srv:
        with pytest.raises(StructuredOutputError) as ei:
            fast_teacher(srv).ask('Label it', schema=Label, max_reasks=2)
    assert len(srv.requests) == 3
    assert 'confidence' in srv.requests[1]['messages'][-1]['content'] and 'Field required' in srv.requests[1]['messages'][-1]['content']
    msg = str(ei.value)
    assert 'Last answer:\n{"label": "sport"}' in msg and 'Label' in msg and endpoint_host(srv.base_url) in msg
    assert ei.value.answer == '{"label": "sport"}'


def test_fallback_to_json_object_then_text():
    answer = 'Here you go:\n```json\n{"label": "tech", "confidence": 0.3}\n```'
    with LLMServer(lambda b: answer, response_formats=('text', 'json_object')) as srv:
        t = fast_teacher(srv)
        assert t.ask('a', schema=Label).parsed.label == 'tech'
        assert t.ask('b', schema=Label).parsed.label == 'tech'
    assert [(r.get('response_format') or {}).get('type') for r in srv.requests] == ['json_schema', 'json_object', 'json_object']
    with LLMServer(lambda b: answer, response_formats=('text',)) as srv:
        assert fast_teacher(srv).ask('a', schema=Label).parsed.confidence == 0.3
    assert [(r.get('response_format') or {}).get('type') for r in srv.requests] == ['json_schema', 'json_object', None]
    assert json.dumps(Label.model_json_schema()) in srv.requests[-1]['messages'][0]['content']


def test_429_storm_and_500s_retried_then_succeed(srv):
    srv.inject('rate_limit', times=5, retry_after=0.05).inject('server_error', times=2).inject('server_error', status=503)
    t = fast_teacher(srv, max_retries=8)
    t0 = time.perf_counter()
    a = t.ask('hello')
    dt = time.perf_counter() - t0
    assert a.text == 'hello'
    assert len(srv.requests) == 9 and [l['fault'] for l in srv.log][-1] is None
    assert (a.usage.requests, a.usage.retries) == (9, 8) and (t.usage.requests, t.usage.retries) == (9, 8)
    assert dt >= 5*0.05                                   # Retry-After honoured (backoff alone would be ~0.03 s)


def test_429_honours_retry_after_over_backoff(srv):
    srv.inject('rate_limit', times=2, retry_after=0.3)
    t0 = time.perf_counter()
    fast_teacher(srv).ask('x')
    assert 0.6 <= time.perf_counter() - t0 < 5


def test_retries_exhausted_error_names_host_not_key(srv, caplog):
    srv.inject('server_error', times=10)
    t = fast_teacher(srv, max_retries=3)
    with caplog.at_level(logging.DEBUG), pytest.raises(TeacherUnavailableError) as ei: t.ask('hello')
    text = ''.join(traceback.format_exception(ei.value))
    assert endpoint_host(srv.base_url) in str(ei.value) and 'after 4 attempts' in str(ei.value) and 'HTTP 500' in str(ei.value)
    assert len(srv.requests) == 4 and t.usage.retries == 3
    assert SECRET not in text and SECRET not in caplog.text and 'retry 3/3' in caplog.text


def test_non_retryable_status_raises_at_once(srv):
    srv.inject('server_error', status=400)
    with pytest.raises(TeacherAPIError) as ei: fast_teacher(srv).ask('hello')
    assert ei.value.status_code == 400 and len(srv.requests) == 1


def test_hang_hits_the_timeout(srv):
    srv.inject('hang', seconds=20)
    t = fast_teacher(srv, timeout=0.3, max_retries=0)
    t0 = time.perf_counter()
    with pytest.raises(TeacherTimeoutError, match='timed out'): t.ask('hello')
    assert 0.3 <= time.perf_counter() - t0 < 5
    srv.inject('hang', seconds=20)                        # with a retry, the second attempt answers
    a = fast_teacher(srv, timeout=0.3, max_retries=1).ask('hello')
    assert a.text == 'hello' and a.usage.retries == 1


def test_disconnect_and_malformed_body_are_retried(srv):
    srv.inject('disconnect').inject('malformed')
    a = fast_teacher(srv, max_retries=2).ask('hello')
    assert a.text == 'hello' and a.usage.retries == 2 and len(srv.requests) == 3


def test_cache_hit_on_rerun_with_zero_requests(tmp_path):
    schema_answer = '{"label": "sport", "confidence": 0.9}'
    with LLMServer(lambda b: schema_answer) as srv:
        prompts = [f'text {i}' for i in range(10)]
        first = fast_teacher(srv, tmp_path).map(prompts, schema=Label, progress=False)
        assert len(srv.requests) == 10
        srv.reset()
        t = Teacher('test-model', srv.base_url, 'sk-some-OTHER-key-987654', cache_dir=tmp_path)  # new client, other key
        again = t.map(prompts, schema=Label, progress=False)
    assert len(srv.requests) == 0
    assert all(a.cached for a in again) and [a.parsed for a in again] == [a.parsed for a in first]
    assert (t.usage.cache_hits, t.usage.cache_misses, t.usage.requests) == (10, 0, 0)


def test_cache_key_covers_the_request(tmp_path):
    with LLMServer() as srv:
        t = fast_teacher(srv, tmp_path)
        for kw in [{}, {'temperature': 0.5}, {'max_tokens': 3}, {'seed': 1}, {'logprobs': True}, {'n': 2}, {'schema': Label}]:
            if 'schema' in kw: srv.respond = lambda b: '{"label": "a", "confidence": 1}'
            t.ask('same prompt', **kw)
        assert len(srv.requests) == 7                     # every variation is a different request
        u = Teacher('other-model', srv.base_url, cache_dir=tmp_path).ask('same prompt')
        assert not u.cached and len(srv.requests) == 8


def test_sigkill_mid_run_rerun_pays_only_for_missing(tmp_path):
    n = 80
    script = textwrap.dedent(f'''
        from llmkd.teacher import Teacher
        t = Teacher('test-model', BASE_URL, {SECRET!r}, cache_dir={str(tmp_path)!r}, concurrency=4)
        t.map([f'item {{i}}' for i in range({n})], progress=False)
        print('finished')
    ''')
    with LLMServer(lambda b: b['messages'][-1]['content'].upper(), latency=0.05) as srv:
        proc = subprocess.Popen([sys.executable, '-c', script.replace('BASE_URL', repr(srv.base_url))], stdout=subprocess.PIPE)
        deadline = time.time() + 30
        while len(srv.requests) < 24 and proc.poll() is None and time.time() < deadline: time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL and b'finished' not in out
        sent_before = len(srv.requests)
        n_cached = len(AnswerCache(tmp_path/'teacher.sqlite'))
        assert 10 <= n_cached <= sent_before < n
        srv.reset()
        t = fast_teacher(srv, tmp_path, concurrency=8)
        rs = t.map([f'item {i}' for i in range(n)], progress=False)
    assert len(srv.requests) == n - n_cached               # pays only for the missing ones
    assert sorted(r['messages'][-1]['content'] for r in srv.requests) == sorted(
        f'item {i}' for i, a in enumerate(rs) if not a.cached)
    assert [a.text for a in rs] == [f'ITEM {i}' for i in range(n)]   # and loses none
    assert (t.usage.cache_hits, t.usage.cache_misses) == (n_cached, n - n_cached)
    assert len(AnswerCache(tmp_path/'teacher.sqlite')) == n


def test_two_processes_share_one_cache(tmp_path):
    script = textwrap.dedent(f'''
        import sys
        from llmkd.teacher import Teacher
        t = Teacher('test-model', sys.argv[1], cache_dir={str(tmp_path)!r}, concurrency=4)
        rs = t.map([f'item {{i}}' for i in range(40)], progress=False)
        assert [r.text for r in rs] == [f'item {{i}}' for i in range(40)]
    ''')
    with LLMServer(latency=0.01) as srv:
        procs = [subprocess.Popen([sys.executable, '-c', script, srv.base_url]) for _ in range(2)]
        assert [p.wait(60) for p in procs] == [0, 0]
    assert len(AnswerCache(tmp_path/'teacher.sqlite')) == 40 and 40 <= len(srv.requests) <= 80


def test_api_key_in_no_byte_of_cache_or_error_text(tmp_path, caplog):
    errors = []
    with caplog.at_level(logging.DEBUG), LLMServer(lambda b: 'not json at all') as srv:
        t = fast_teacher(srv, tmp_path, max_retries=1, timeout=0.3)
        t.ask('plain question')
        t.map([f'q {i}' for i in range(5)], progress=False, logprobs=True)
        for setup, call in [(lambda: None, lambda: t.ask('x', schema=Label, max_reasks=1)),
                            (lambda: srv.inject('server_error', times=2), lambda: t.ask('y')),
                            (lambda: srv.inject('server_error', status=401), lambda: t.ask('z')),
                            (lambda: srv.inject('hang', times=2, seconds=5), lambda: t.ask('w')),
                            (lambda: srv.inject('server_error', times=4), lambda: t.map(['m1', 'm2'], progress=False))]:
            setup()
            with pytest.raises(TeacherError) as ei: call()
            errors.append(ei.value)
    assert [type(e) for e in errors] == [StructuredOutputError, TeacherUnavailableError, TeacherAuthError, TeacherTimeoutError, MapError]
    files = list(tmp_path.glob('teacher.sqlite*'))
    c = AnswerCache(tmp_path/'teacher.sqlite')
    assert files and len(c) >= 6 and len(c.rejected()) >= 1            # invalid answers kept for the record
    for f in files: assert SECRET.encode() not in f.read_bytes(), f
    for e in errors:
        text = ''.join(traceback.format_exception(e)) + repr(e) + str(vars(e))
        assert SECRET not in text, text
    assert SECRET not in caplog.text and SECRET not in repr(t)


def test_logprobs_per_choice_and_missing_reported_as_none():
    with LLMServer(lambda b: ['yes', 'no']) as srv:
        t = fast_teacher(srv)
        a = t.ask('Is it?', n=4, top_logprobs=2)
        assert [c.text for c in a.choices] == ['yes', 'no', 'yes', 'no']     # 2 choices per response: topped up
        assert [r.get('n') for r in srv.requests] == [4, 2] and srv.requests[0]['logprobs'] is True
        assert a.choices[1].logprobs == [TokenLogprob('no', -0.1, {'no': -0.1, '<alt1>': -1.1})]
        srv.inject('no_logprobs')
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            b = t.ask('Is it now?', logprobs=True)
        assert b.logprobs is None and all(c.logprobs is None for c in b.choices)
        assert any('returned no logprobs' in str(x.message) for x in w)
        assert t.ask('no logprobs asked').logprobs is None


def test_map_order_bounded_concurrency_and_failures_kept(tmp_path):
    active, peak, lock = [0], [0], threading.Lock()
    def respond(body):
        with lock: active[0] += 1; peak[0] = max(peak[0], active[0])
        time.sleep(0.03 if int(body['messages'][0]['content'].split()[1]) % 2 else 0.001)
        with lock: active[0] -= 1
        return body['messages'][0]['content'].upper()
    with LLMServer(respond) as srv:
        srv.inject('server_error', times=3)
        t = fast_teacher(srv, tmp_path, concurrency=3, max_retries=0)
        prompts = [f'item {i}' for i in range(20)]
        with pytest.raises(MapError) as ei: t.map(prompts, progress=False)
        rs = ei.value.results
        assert len(ei.value.errors) == 3 and peak[0] <= 3
        assert all(isinstance(rs[i], TeacherUnavailableError) for i in ei.value.errors)
        assert [r.text for r in rs if isinstance(r, Answer)] == [p.upper() for p, r in zip(prompts, rs) if isinstance(r, Answer)]
        srv.reset()
        rs = t.map(prompts, progress=True)
    assert [r.text for r in rs] == [p.upper() for p in prompts] and len(srv.requests) == 3


def test_accounting_and_cost(tmp_path):
    prices = {'prompt': 2.0, 'completion': 10.0}
    with LLMServer(lambda b: 'one two three') as srv:
        t = fast_teacher(srv, tmp_path, prices=prices, max_retries=2)
        srv.inject('rate_limit', retry_after=0)
        msgs = [{'role': 'system', 'content': 'You are terse.'}, {'role': 'user', 'content': 'count to three'}]
        a = t.ask(msgs)
        b = t.ask(msgs)
    pt, ct = prompt_tokens(msgs), 3
    cost = (pt*2.0 + ct*10.0) / 1e6
    assert a.usage == Usage(requests=2, retries=1, prompt_tokens=pt, completion_tokens=ct, cache_misses=1, cost=pytest.approx(cost))
    assert b.cached and b.usage.requests == 0 and b.usage.cost == 0
    assert t.usage == Usage(requests=2, retries=1, prompt_tokens=pt, completion_tokens=ct, cache_hits=1, cache_misses=1, cost=pytest.approx(cost))
    t.reset_usage()
    assert t.usage == Usage(cost=0.)


def test_dry_run_excludes_cached(tmp_path):
    with LLMServer() as srv:
        t = fast_teacher(srv, tmp_path, prices={'prompt': 1.0, 'completion': 1.0})
        t.ask('cached one', max_tokens=7, n=2)
        est = t.dry_run(['cached one', 'new one', 'another new one'], max_tokens=7, n=2)
        est_schema = t.dry_run(['cached one'], schema=Label)
    assert len(srv.requests) == 1
    assert (est.requests, est.cache_hits, est.completion_tokens) == (2, 1, 2*7*2)
    assert est.prompt_tokens > 0 and est.cost == pytest.approx((est.prompt_tokens + est.completion_tokens)/1e6)
    assert est_schema.requests == 1 and est_schema.prompt_tokens > len(json.dumps(Label.model_json_schema()))//4


def test_environment_configuration(monkeypatch, tmp_path):
    with LLMServer() as srv:
        monkeypatch.setenv('LLMKD_MODEL', 'env-model'); monkeypatch.setenv('OPENAI_BASE_URL', srv.base_url)
        monkeypatch.setenv('OPENAI_API_KEY', SECRET); monkeypatch.setenv('LLMKD_CACHE_DIR', str(tmp_path/'envcache'))
        t = Teacher()
        assert t.ask('hi').text == 'hi' and srv.requests[0]['model'] == 'env-model'
    assert (tmp_path/'envcache'/'teacher.sqlite').exists() and SECRET not in repr(t)
    monkeypatch.delenv('LLMKD_MODEL')
    with pytest.raises(TeacherError, match='LLMKD_MODEL'): Teacher()
    monkeypatch.delenv('OPENAI_API_KEY')
    with pytest.raises(TeacherError, match='no API key for api.example.com'): Teacher('m', 'https://api.example.com/v1')
    with pytest.raises(TeacherError, match="messages must be a string"): Teacher('m', cache=False).ask(42)


def test_fallback_when_server_answers_500_naming_response_format():
    "llama-cpp-python refuses json_schema with HTTP 500: a fallback, not five retries"
    with LLMServer(lambda b: '{"label": "x", "confidence": 0.5}', response_formats=('text', 'json_object'), format_error_status=500) as srv:
        a = fast_teacher(srv).ask('a', schema=Label)
    assert a.parsed.label == 'x' and (a.usage.requests, a.usage.retries) == (2, 0)
    assert [r['response_format']['type'] for r in srv.requests] == ['json_schema', 'json_object']
    assert srv.requests[1]['response_format']['schema'] == Label.model_json_schema()
