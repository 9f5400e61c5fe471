"""Teacher against misbehaving servers (llmkd.testing over real HTTP): deadlines, schema refusals, strict answers,
rejected answers, cross-process claims, adaptive concurrency, cause-fitting errors with clean chains, bad input."""
import json, math, subprocess, sys, textwrap, time, traceback
from collections import Counter

import pytest
from pydantic import BaseModel

from llmkd.core import InputError, LLMKDError
from llmkd.testing import LLMServer
from llmkd.teacher import (Teacher, AnswerCache, TeacherError, TeacherInputError, TeacherTimeoutError, TeacherQuotaError,
                           TeacherAuthError, TeacherBadRequestError, TeacherUnavailableError, StructuredOutputError, MapError,
                           endpoint_host)

SECRET = 'sk-llmkd-test-SECRET-0123456789'


class Label(BaseModel):
    label: str
    confidence: float


class Score(BaseModel):
    score: int


def fast(srv, tmp_path=None, **kw):
    kw = {'backoff': 0.001, 'max_backoff': 0.01, 'api_key': SECRET, **kw}
    if tmp_path is None: kw.setdefault('cache', False)
    else: kw.setdefault('cache_dir', tmp_path)
    return Teacher('test-model', srv.base_url, **kw)


def fmt(r): return (r.get('response_format') or {}).get('type')


def chain(e):
    "Every exception reachable from `e` through __cause__ and __context__"
    seen, todo = [], [e]
    while todo:
        x = todo.pop()
        if x is None or any(x is s for s in seen): continue
        seen.append(x); todo += [x.__cause__, x.__context__]
    return seen


# 1. one deadline per attempt
def test_slow_drip_is_cut_at_the_attempt_deadline():
    with LLMServer() as srv:
        srv.inject('slow_drip', interval=0.5)
        t = fast(srv, timeout=2, max_retries=0)
        t0 = time.perf_counter()
        with pytest.raises(TeacherTimeoutError) as ei: t.ask('hello')
        dt = time.perf_counter() - t0
        assert 1.9 <= dt < 3, dt                       # every byte came within 0.5 s: only the deadline stops it
        assert endpoint_host(srv.base_url) in str(ei.value) and 'timed out' in str(ei.value) and '`timeout`' in str(ei.value)
        assert len(srv.requests) == 1
        srv.inject('slow_drip', interval=0.002)          # a drip that ends within the deadline is a normal answer
        assert fast(srv, timeout=5, max_retries=0).ask('quick').text == 'quick'


# 2. structured-output fallback independent of the wording, learned per endpoint+model in the cache
def test_bare_500_on_json_schema_falls_back_and_is_learned(tmp_path):
    with LLMServer(lambda b: '{"label": "x", "confidence": 0.5}') as srv:
        srv.inject('server_error')                     # a bare 500: no word about response_format
        a = fast(srv, tmp_path, max_retries=4).ask('a', schema=Label)
        assert a.parsed.label == 'x' and (a.usage.requests, a.usage.retries) == (2, 0) and not a.cached
        assert [fmt(r) for r in srv.requests] == ['json_schema', 'json_object']
        assert 'server error' in json.dumps(srv.log[0]).lower() or srv.log[0]['fault'] == 'server_error'
        srv.reset()
        script = textwrap.dedent(f'''
            import sys
            from llmkd.teacher import Teacher
            t = Teacher('test-model', sys.argv[1], cache_dir={str(tmp_path)!r})
            from pydantic import BaseModel
            class Label(BaseModel):
                label: str
                confidence: float
            a, b = t.ask('a', schema=Label), t.ask('b', schema=Label)
            print(a.cached, b.cached, t.learned['mode'])
        ''')
        out = subprocess.run([sys.executable, '-c', script, srv.base_url], capture_output=True, text=True, timeout=60)
        assert out.stdout.split() == ['True', 'False', 'json_object'], out.stderr
        assert [fmt(r) for r in srv.requests] == ['json_object']          # a new process pays no refusal


def test_fresh_teacher_map_pays_one_refusal_not_one_per_thread(tmp_path):
    with LLMServer(lambda b: '{"label": "x", "confidence": 0.5}', response_formats=('text',), format_error_status=500) as srv:
        rs = fast(srv, tmp_path, concurrency=8).map([f'p{i}' for i in range(16)], schema=Label, progress=False)
    assert all(r.parsed.label == 'x' for r in rs)
    assert Counter(fmt(r) for r in srv.requests) == {'json_schema': 1, 'json_object': 1, None: 16}


# 3. strict types: no bool or NaN for numbers; re-ask, then an error that shows the answer
def test_bool_and_nan_are_not_numbers():
    answers = iter(['{"label": "a", "confidence": true}', '{"label": "a", "confidence": NaN}', '{"label": "a", "confidence": 0.4}'])
    with LLMServer(lambda b: next(answers)) as srv:
        a = fast(srv).ask('q', schema=Label)
    assert a.parsed.confidence == 0.4 and len(srv.requests) == 3
    assert 'answer.confidence must be a finite number, got true' in srv.requests[1]['messages'][-1]['content']
    assert 'got NaN' in srv.requests[2]['messages'][-1]['content']
    with LLMServer(lambda b: '{"score": true}') as srv:
        with pytest.raises(StructuredOutputError) as ei: fast(srv).ask('q', schema=Score, max_reasks=1)
    assert len(srv.requests) == 2 and 'Last answer:\n{"score": true}' in str(ei.value) and 'answer.score' in str(ei.value)


# 5. invalid answers kept for the record, never served as a cache hit for a new attempt
def test_invalid_answers_are_rejected_and_asked_again(tmp_path):
    with LLMServer(lambda b: 'no json here') as srv:
        t = fast(srv, tmp_path)
        with pytest.raises(StructuredOutputError): t.ask('q', schema=Label, max_reasks=2)
        assert len(srv.requests) == 3
        with pytest.raises(StructuredOutputError): fast(srv, tmp_path).ask('q', schema=Label, max_reasks=2)
        assert len(srv.requests) == 6                  # a rerun pays again: nothing invalid was replayed
    c = AnswerCache(tmp_path/'teacher.sqlite')
    assert len(c.rejected()) == 6 and all('no JSON object found' in r['error'] for r in c.rejected())


def test_valid_chain_replays_and_partial_n_reasks_only_the_invalid(tmp_path):
    good, bad = '{"label": "a", "confidence": 0.5}', '{"label": "a"}'
    def respond(b):
        if len(b['messages']) > 1: return bad        # re-asks never fix it
        return [good, bad, good]
    with LLMServer(respond) as srv:
        a = fast(srv, tmp_path).ask('q', schema=Label, n=3, on_invalid='keep', max_reasks=2)
        assert [c.parsed is not None for c in a.choices] == [True, False, True] and 'confidence' in a.choices[1].error
        assert len(srv.requests) == 3                  # one request with n=3, two re-asks for the invalid choice
        srv.reset()
        b = fast(srv, tmp_path).ask('q', schema=Label, n=3, on_invalid='keep', max_reasks=2)
        assert len(srv.requests) == 2 and all(len(r['messages']) > 1 for r in srv.requests)   # only the re-asks again
        assert [c.parsed for c in b.choices][::2] == [c.parsed for c in a.choices][::2] and not b.cached


# 6. cross-process claims: overlapping prompts paid exactly once
def test_concurrent_processes_pay_each_overlapping_prompt_once(tmp_path):
    script = textwrap.dedent(f'''
        import sys
        from llmkd.teacher import Teacher
        lo = int(sys.argv[2])
        t = Teacher('test-model', sys.argv[1], cache_dir={str(tmp_path)!r}, concurrency=6)
        rs = t.map([f'item {{i}}' for i in range(lo, lo + 30)], progress=False)
        assert [r.text for r in rs] == [f'ITEM {{i}}' for i in range(lo, lo + 30)]
    ''')
    with LLMServer(lambda b: b['messages'][-1]['content'].upper(), latency=0.05) as srv:
        procs = [subprocess.Popen([sys.executable, '-c', script, srv.base_url, str(lo)]) for lo in (0, 10, 20)]
        assert [p.wait(120) for p in procs] == [0, 0, 0]
    paid = Counter(r['messages'][-1]['content'] for r in srv.requests)
    assert set(paid) == {f'item {i}' for i in range(50)} and set(paid.values()) == {1}, paid.most_common(3)
    assert len(AnswerCache(tmp_path/'teacher.sqlite')) == 50


def test_claim_of_a_dead_process_is_taken_over_at_once(tmp_path):
    with LLMServer() as srv:
        t = fast(srv, tmp_path)
        key_req = t._request([{'role': 'user', 'content': 'held'}])
        from llmkd.teacher import request_key
        t.cache.claim(request_key(t.base_url, key_req), f'{__import__("socket").gethostname()}:999999999:1', ttl=600)
        t0 = time.perf_counter()
        assert t.ask('held').text == 'held' and time.perf_counter() - t0 < 2 and len(srv.requests) == 1


# 7. adaptive concurrency: a one-slot server and a large provider with the same defaults
def test_one_slot_server_gets_no_timeouts_with_the_defaults(tmp_path):
    with LLMServer(lambda b: 'ok', latency=0.2, slots=1) as srv:
        t = fast(srv, timeout=1.2)
        rs = t.map([f'p{i}' for i in range(12)], progress=False)
        assert len(rs) == 12 and t.usage.retries == 0 and len(srv.requests) == 12 and srv.peak_in_flight <= 3
        assert t.limit.limit <= 2                       # settled at one answer computing and one waiting
    with LLMServer(lambda b: 'ok', latency=0.2, slots=1) as srv:   # the same server with 8 fixed threads: paid twice
        t = fast(srv, timeout=1.2, adaptive=False, max_retries=6)
        t.map([f'p{i}' for i in range(12)], progress=False, return_exceptions=True)
        assert t.usage.retries > 0 and len(srv.requests) > 12


def test_large_provider_grows_to_full_concurrency():
    with LLMServer(lambda b: 'ok', latency=0.2) as srv:
        t = fast(srv, concurrency=8)
        t0 = time.perf_counter()
        t.map([f'p{i}' for i in range(48)], progress=False)
        dt = time.perf_counter() - t0
    assert srv.peak_in_flight == 8 and dt < 48*0.2/4 and t.limit.limit == 8


def test_abandoned_request_not_resent_while_the_server_computes_it():
    with LLMServer(lambda b: 'ok', slots=1) as srv:
        srv.inject('hang', seconds=1.0)               # the first answer takes 1 s in the only slot
        a = fast(srv, timeout=0.6, max_retries=1).ask('q')
    assert a.text == 'ok' and len(srv.requests) == 2
    assert srv.log[1]['t'] - srv.log[0]['t'] >= 1.0     # the retry waited for the abandoned computation


# 8. errors that fit the cause, chains without openai exceptions or echoed keys
@pytest.mark.parametrize('setup,cls,words,n_req', [
    (dict(fault='rate_limit', code='insufficient_quota', message='You exceeded your current quota'), TeacherQuotaError, 'quota', 1),
    (dict(fault='server_error', status=401, message='Incorrect API key provided: {authorization}'), TeacherAuthError, 'api_key', 1),
    (dict(fault='server_error', status=403, message='key {authorization} may not use this model'), TeacherAuthError, 'credentials', 1),
    (dict(fault='server_error', status=400, message='context length exceeded for {authorization}'), TeacherBadRequestError, 'prompt length', 1),
    (dict(fault='server_error', status=503, message='overloaded; your key {authorization}', times=3), TeacherUnavailableError, 'server is up', 3),
])
def test_errors_fit_the_cause_and_hold_no_secret(setup, cls, words, n_req):
    setup = dict(setup); fault, times = setup.pop('fault'), setup.pop('times', 1)
    with LLMServer() as srv:
        srv.inject(fault, times=times, **setup)
        with pytest.raises(TeacherError) as ei: fast(srv, max_retries=2).ask('q')
    e = ei.value
    assert type(e) is cls and words in str(e) and endpoint_host(srv.base_url) in str(e) and len(srv.requests) == n_req
    assert 'timeout' not in str(e) or cls is TeacherUnavailableError
    reach = chain(e)
    assert all(isinstance(x, LLMKDError) for x in reach) and e.__context__ is None and e.__cause__ is None
    text = ''.join(traceback.format_exception(e)) + repr(vars(e))
    assert SECRET not in text


def test_map_error_chain_is_clean():
    with LLMServer() as srv:
        srv.inject('server_error', status=401, message='bad key {authorization}')
        with pytest.raises(MapError) as ei: fast(srv, max_retries=0, concurrency=1).map(['a', 'b'], progress=False)
    assert all(isinstance(x, LLMKDError) for x in chain(ei.value)) and SECRET not in ''.join(traceback.format_exception(ei.value))


# 4. bad input: a named error before any request
@pytest.mark.parametrize('call,words', [
    (lambda t: t.ask(float('nan')), 'messages must be a string'),
    (lambda t: t.ask([{'role': 'user', 'content': None}]), 'message 0 has no text'),
    (lambda t: t.ask('q', n=0), 'n (choices wanted)'),
    (lambda t: t.ask('q', n=True), 'n (choices wanted)'),
    (lambda t: t.ask('q', temperature=float('nan')), 'temperature'),
    (lambda t: t.ask('q', max_tokens=2.5), 'max_tokens'),
    (lambda t: t.ask('q', schema=dict), 'pydantic BaseModel'),
    (lambda t: t.ask('q', on_invalid='ignore'), 'on_invalid'),
    (lambda t: t.map(['ok', 'fine', float('nan')], progress=False), 'item 2 of 3'),
    (lambda t: t.map(['ok'], max_reasks=-1, progress=False), 'max_reasks'),
    (lambda t: t.dry_run(['ok'], n=0), 'n (choices wanted)'),
])
def test_bad_input_raises_before_any_request(call, words):
    with LLMServer() as srv:
        with pytest.raises(InputError) as ei: call(fast(srv))
    assert isinstance(ei.value, TeacherInputError) and words in str(ei.value) and len(srv.requests) == 0


# 11. tests set and clear their own environment
def test_shell_endpoint_settings_do_not_leak_into_tests(monkeypatch):
    import os
    assert not {'LLMKD_MODEL', 'OPENAI_BASE_URL', 'OPENAI_API_KEY'} & set(os.environ)   # removed by conftest for every test
    monkeypatch.setenv('LLMKD_MODEL', 'from-shell')
    with LLMServer() as srv:
        assert Teacher(base_url=srv.base_url, cache=False).ask('hi').text == 'hi' and srv.requests[0]['model'] == 'from-shell'


def test_server_dying_mid_choices_rerun_pays_only_the_missing_parts(tmp_path):
    "The mode is learned from the first answer, and the choices that came back are kept, even when the call then fails"
    state = {'down': False}
    def respond(b):
        if state['down']: raise RuntimeError('out of memory')
        state['down'] = True                            # the server answers once, then fails
        return '{"label": "a", "confidence": 0.5}'
    with LLMServer(respond, response_formats=('text', 'json_object'), ignore_n=True) as srv:
        with pytest.raises(TeacherUnavailableError): fast(srv, tmp_path, max_retries=1).ask('q', schema=Label, n=3)
        assert [fmt(r) for r in srv.requests] == ['json_schema', 'json_object', 'json_object', 'json_object']
        srv.reset(); state['down'] = False; srv.respond = lambda b: '{"label": "a", "confidence": 0.5}'
        a = fast(srv, tmp_path).ask('q', schema=Label, n=3)
    assert len(a.choices) == 3 and [fmt(r) for r in srv.requests] == ['json_object', 'json_object']   # parts 1 and 2 only
    assert a.usage.cache_hits == 1 and not a.cached
