"""Throughput of `Teacher.map` against the local `LLMServer` with injected latency.

Prints wall / (N*L/c) -- 1.0 is perfect use of the concurrency (target <= 1.15 for N=200, L=0.2 s, c=16;
note ceil(N/c)*L/(N*L/c) = 1.04 is the floor when N is not a multiple of c) -- and the time of the cached rerun
(target < 1 s). Usage: python benchmarks/teacher_throughput.py [--n 200] [--latency 0.2] [--concurrency 16]
"""
import argparse, os, platform, tempfile, time

from llmkd.testing import LLMServer
from llmkd.teacher import Teacher


def main(n=200, latency=0.2, concurrency=16):
    prompts = [f'Label the sentiment of review {i}: "it was fine"' for i in range(n)]
    with LLMServer(lambda body: '{"label": "positive"}', latency=latency) as srv, tempfile.TemporaryDirectory() as d:
        t = Teacher('bench-model', srv.base_url, cache_dir=d, concurrency=concurrency)
        t0 = time.perf_counter()
        rs = t.map(prompts, progress=False)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = t.map(prompts, progress=False)
        cached = time.perf_counter() - t0
        assert len(srv.requests) == n and all(a.cached for a in again) and [a.text for a in again] == [a.text for a in rs]
    ideal = n * latency / concurrency
    print(f'machine: {platform.machine()}, {os.cpu_count()} CPUs; N={n}, L={latency}s, c={concurrency}')
    print(f'first run: {wall:.3f} s, ideal N*L/c = {ideal:.3f} s, ratio wall/(N*L/c) = {wall/ideal:.3f} (target <= 1.15)')
    print(f'cached rerun: {cached:.3f} s for {n} prompts, 0 requests (target < 1 s)')
    return wall / ideal, cached


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=200)
    p.add_argument('--latency', type=float, default=0.2)
    p.add_argument('--concurrency', type=int, default=16)
    a = p.parse_args()
    main(a.n, a.latency, a.concurrency)
