"""Throughput of `Teacher.map` against the local `LLMServer` with injected latency.

Prints wall / (N*L/c) -- 1.0 is perfect use of the concurrency (target <= 1.15 for N=200, L=0.2 s, c=16;
ceil(N/c)*c/N = 1.04 is the floor when N is not a multiple of c) -- and the time of the cached rerun (target < 1 s).
By default the server runs in a thread of the benchmark process (as in the tests); `--server-process` runs it in
its own process, as a real endpoint would be. Client CPU per request is under 1 ms here, so on a loaded machine the
ratio mostly measures how much CPU the client and server threads get.
The adaptive limit starts at 2 requests in flight and grows with each fast answer, so its ramp-up costs a few round
trips; `--fixed` keeps `concurrency` requests in flight from the start.
Usage: python benchmarks/teacher_throughput.py [--n 200] [--latency 0.2] [--concurrency 16] [--server-process] [--fixed]
"""
import argparse, multiprocessing as mp, os, platform, tempfile, time

from llmkd.testing import LLMServer
from llmkd.teacher import Teacher


def answer(body): return '{"label": "positive"}'


def serve(latency, conn):
    "Run an LLMServer in this process until told to stop; report its base_url and how many requests it got"
    with LLMServer(answer, latency=latency) as srv:
        conn.send(srv.base_url)
        conn.recv()
        conn.send(len(srv.requests))


class ServerProcess:
    def __init__(self, latency): self.latency = latency
    def __enter__(self):
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context('spawn').Process(target=serve, args=(self.latency, child), daemon=True)
        self.proc.start()
        self.base_url = self.conn.recv()
        return self
    def n_requests(self): self.conn.send('stop'); return self.conn.recv()
    def __exit__(self, *exc): self.proc.join(10)


class ServerThread(LLMServer):
    def n_requests(self): return len(self.requests)


def main(n=200, latency=0.2, concurrency=16, server_process=False, fixed=False):
    prompts = [f'Label the sentiment of review {i}: "it was fine"' for i in range(n)]
    server = ServerProcess(latency) if server_process else ServerThread(answer, latency=latency)
    with server as srv, tempfile.TemporaryDirectory() as d:
        t = Teacher('bench-model', srv.base_url, cache_dir=d, concurrency=concurrency, adaptive=not fixed)
        t0 = time.perf_counter()
        rs = t.map(prompts, progress=False)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = t.map(prompts, progress=False)
        cached = time.perf_counter() - t0
        n_req = srv.n_requests()
    assert n_req == n and all(a.cached for a in again) and [a.text for a in again] == [a.text for a in rs]
    ideal = n * latency / concurrency
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(f'machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f}; N={n}, L={latency}s, c={concurrency}, '
          f'server in {"its own process" if server_process else "this process"}, {"fixed" if fixed else "adaptive"} concurrency')
    print(f'first run: {wall:.3f} s, ideal N*L/c = {ideal:.3f} s, ratio wall/(N*L/c) = {wall/ideal:.3f} (target <= 1.15)')
    print(f'cached rerun: {cached:.3f} s for {n} prompts, 0 requests (target < 1 s)')
    return wall / ideal, cached


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=200)
    p.add_argument('--latency', type=float, default=0.2)
    p.add_argument('--concurrency', type=int, default=16)
    p.add_argument('--server-process', action='store_true', help='run the server in its own process')
    p.add_argument('--fixed', action='store_true', help='fixed concurrency (Teacher(adaptive=False))')
    a = p.parse_args()
    main(a.n, a.latency, a.concurrency, a.server_process, a.fixed)
