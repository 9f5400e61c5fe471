"A pseudo-labelling run killed with SIGKILL resumes from the teacher's cache: a rerun asks only for the texts not answered yet."
import signal, subprocess, sys, time

import pandas as pd

from llmkd.testing import LLMServer

N, CONCURRENCY = 40, 2
SCRIPT = '''
import sys
from llmkd.teacher import Teacher
from llmkd.pseudolabel import pseudo_label
base_url, cache_dir, out = sys.argv[1:4]
teacher = Teacher('test-model', base_url, cache_dir=cache_dir, concurrency=%d)
df = pseudo_label([f'text number {i}' for i in range(%d)], ['even', 'odd'], teacher, progress=False)
df.to_csv(out, index=False)
''' % (CONCURRENCY, N)


def respond(body):
    i = int(body['messages'][-1]['content'].split()[-1])
    return '{"label": "%s"}' % ('even' if i % 2 == 0 else 'odd')


def asked(requests): return [r['messages'][-1]['content'].removeprefix('Text:\n') for r in requests]


def test_killed_run_resumes_without_reasking(tmp_path):
    out, texts = tmp_path/'labels.csv', [f'text number {i}' for i in range(N)]
    cmd = [sys.executable, '-c', SCRIPT, None, str(tmp_path/'cache'), str(out)]
    with LLMServer(respond, latency=0.05) as srv:
        cmd[3] = srv.base_url
        proc, deadline = subprocess.Popen(cmd), time.time() + 180
        while len(srv.requests) < N//2:
            assert proc.poll() is None, f'the labelling run ended before it could be killed (rc {proc.returncode})'
            assert time.time() < deadline, 'the labelling run made too few requests in time'
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL); proc.wait()
        first = asked(srv.requests)
        assert proc.returncode == -signal.SIGKILL and not out.exists()
        assert len(first) < N                               # killed mid-run
        subprocess.run(cmd, check=True, timeout=300)
        second = asked(srv.requests[len(first):])
    df = pd.read_csv(out)
    assert list(df.text) == texts
    assert list(df.label) == ['even' if i % 2 == 0 else 'odd' for i in range(N)]
    assert set(df.confidence_source) == {'logprob_labels'}
    finished = set(first[:len(first) - CONCURRENCY])        # answered and cached before the kill (the last ones may be in flight)
    assert not finished & set(second), f're-asked finished texts: {sorted(finished & set(second))}'
    assert set(texts) - set(first) <= set(second)          # the texts never asked are asked now
    assert len(second) == len(set(second)) <= N - len(finished)
