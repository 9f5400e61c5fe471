"LLMServer over real HTTP (plain urllib, no openai client): protocol, faults and records."
import json, time, urllib.error, urllib.request
import pytest
from llmkd.testing import LLMServer, FAULTS


def post(url, body, timeout=5):
    req = urllib.request.Request(url + '/chat/completions', json.dumps(body).encode(), {'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=timeout) as r: return r.status, dict(r.headers), r.read()


def msg(text): return {'model': 'm', 'messages': [{'role': 'user', 'content': text}]}


def test_answers_records_and_counts_tokens():
    with LLMServer(lambda b: 'a b c', latency=0.1) as srv:
        t0 = time.perf_counter()
        status, _, raw = post(srv.base_url, {**msg('one two'), 'n': 2})
        assert time.perf_counter() - t0 >= 0.1
        with urllib.request.urlopen(srv.base_url + '/models') as r: assert json.load(r)['data'][0]['id'] == 'test-model'
    r = json.loads(raw)
    assert status == 200 and [c['message']['content'] for c in r['choices']] == ['a b c']*2
    assert r['usage'] == {'prompt_tokens': 2, 'completion_tokens': 6, 'total_tokens': 8}
    assert srv.requests == [{**msg('one two'), 'n': 2}]


def test_faults_in_order():
    with LLMServer() as srv:
        srv.inject('rate_limit', retry_after=3).inject('server_error', status=503).inject('malformed')
        with pytest.raises(urllib.error.HTTPError) as e: post(srv.base_url, msg('x'))
        assert e.value.code == 429 and e.value.headers['Retry-After'] == '3'
        with pytest.raises(urllib.error.HTTPError) as e: post(srv.base_url, msg('x'))
        assert e.value.code == 503 and 'error' in json.loads(e.value.read())
        status, _, raw = post(srv.base_url, msg('x'))
        with pytest.raises(ValueError): json.loads(raw)
        srv.inject('disconnect')
        with pytest.raises(Exception): post(srv.base_url, msg('x'))
        srv.inject('hang', seconds=5)
        with pytest.raises(Exception): post(srv.base_url, msg('x'), timeout=0.2)
        assert post(srv.base_url, msg('ok'))[0] == 200
    assert [l['fault'] for l in srv.log] == ['rate_limit', 'server_error', 'malformed', 'disconnect', 'hang', None]
    assert len(srv.requests) == 6 and set(FAULTS) >= {l['fault'] for l in srv.log if l['fault']}


def test_logprobs_response_formats_and_respond_errors():
    with LLMServer(lambda b: 'x y', response_formats=('text',)) as srv:
        r = json.loads(post(srv.base_url, {**msg('q'), 'logprobs': True, 'top_logprobs': 3})[2])
        assert [t['token'] for t in r['choices'][0]['logprobs']['content']] == ['x', ' y']
        assert len(r['choices'][0]['logprobs']['content'][0]['top_logprobs']) == 3
        srv.inject('no_logprobs')
        assert json.loads(post(srv.base_url, {**msg('q'), 'logprobs': True})[2])['choices'][0]['logprobs'] is None
        with pytest.raises(urllib.error.HTTPError) as e: post(srv.base_url, {**msg('q'), 'response_format': {'type': 'json_object'}})
        assert e.value.code == 400
    with LLMServer(lambda b: 1/0) as srv:
        with pytest.raises(urllib.error.HTTPError) as e: post(srv.base_url, msg('q'))
        assert e.value.code == 500 and 'ZeroDivisionError' in e.value.read().decode()
    with LLMServer(logprobs=False) as srv:
        assert json.loads(post(srv.base_url, {**msg('q'), 'logprobs': True})[2])['choices'][0]['logprobs'] is None


def test_start_stop_and_bad_fault():
    srv = LLMServer().start()
    url = srv.base_url
    assert post(url, msg('hi'))[0] == 200
    srv.stop()
    assert not srv.running and srv.base_url == url
    with pytest.raises(Exception): post(url, msg('hi'), timeout=1)
    with pytest.raises(ValueError, match='unknown fault'): srv.inject('nope')
