"""Export and import of batch JSONL at scale: rows/s and peak RSS for 100k and 1M requests.

Export: `llmkd.batch.export_batch` writes the OpenAI batch JSONL of N distinct prompts (the request bodies `Teacher.ask`
would send, split under OpenAI's 50,000-request / 200 MB limits), checking the (empty) cache for each chunk.
Import: `llmkd.batch.import_batch_output` reads an OpenAI-format output file of N answer rows (one chat completion
per row, generated from the exported files before timing) into the teacher's sqlite cache.
Each phase runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own; streaming means the peak does not grow
with N. Target: import at least 50k rows/s. The rerun check at the end asks `Teacher.ask` for a few items: cache hits.
Usage: python benchmarks/batch_io.py [--sizes 100000 1000000] [--dir /tmp/llmkd-batch-io] [--keep]
"""
import argparse, json, os, platform, resource, shutil, subprocess, sys, time
from pathlib import Path


def items(n): return (f'Classify this news text {i}: the match ended 2-{i % 7} after extra time' for i in range(n))


def teacher(d):
    from llmkd.teacher import Teacher
    return Teacher('test-model', 'http://127.0.0.1:9/v1', cache_dir=d)


def peak_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_export(n, d):
    from llmkd.batch import export_batch
    t, base = teacher(d), peak_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    rep = export_batch(t, items(n), d/'in.jsonl', max_tokens=5, temperature=0)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert rep.requests == n
    return dict(rows=n, seconds=dt, rows_per_s=n/dt, rows_per_cpu_s=n/cpu, files=len(rep.files), mb_written=sum(p.stat().st_size for p in rep.files)/1e6,
                peak_rss_mb=peak_mb(), rss_before_mb=base)


def write_output(d):
    "An OpenAI batch output file answering every exported request (not timed)"
    from llmkd.testing import chat_completion
    with open(d/'out.jsonl', 'w') as out:
        for p in sorted(d.glob('in.*.jsonl')):
            with open(p) as f:
                for i, line in enumerate(f):
                    row = json.loads(line)
                    body = chat_completion(row['body'], '{"label": "sport"}')
                    out.write(json.dumps({'id': f'batch_req_{i}', 'custom_id': row['custom_id'],
                                          'response': {'status_code': 200, 'request_id': f'req_{i}', 'body': body}, 'error': None}) + '\n')


def phase_import(n, d):
    from llmkd.batch import import_batch_output
    t, base = teacher(d), peak_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    rep = import_batch_output(t, d/'out.jsonl')
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert rep.imported == n and not rep.errors
    probe = [t.ask(m, max_tokens=5, temperature=0) for m in list(items(3))]
    assert all(a.cached and a.text == '{"label": "sport"}' for a in probe)
    return dict(rows=n, seconds=dt, rows_per_s=n/dt, rows_per_cpu_s=n/cpu, mb_read=(d/'out.jsonl').stat().st_size/1e6, peak_rss_mb=peak_mb(), rss_before_mb=base)


def run_phase(name, n, d):
    r = subprocess.run([sys.executable, __file__, '--phase', name, '--n', str(n), '--dir', str(d)], capture_output=True, text=True)
    if r.returncode: sys.exit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sizes', type=int, nargs='+', default=[100_000, 1_000_000])
    ap.add_argument('--dir', default='/tmp/llmkd-batch-io'); ap.add_argument('--keep', action='store_true')
    ap.add_argument('--phase'); ap.add_argument('--n', type=int)
    a = ap.parse_args()
    if a.phase:
        d = Path(a.dir)
        if a.phase == 'write_output': write_output(d); print(json.dumps({}))
        else: print(json.dumps((phase_export if a.phase == 'export' else phase_import)(a.n, d)))
        return
    print(f'machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}')
    print(f'load average before: {os.getloadavg()[0]:.1f} (other processes share the CPUs: rows per CPU-second is the steadier figure)')
    print(f'{"phase":7} {"rows":>9} {"seconds":>8} {"rows/s":>9} {"rows/CPU-s":>10} {"peak RSS MB":>12} {"MB":>8}')
    for n in a.sizes:
        d = Path(a.dir)/str(n)
        shutil.rmtree(d, ignore_errors=True); d.mkdir(parents=True)
        e = run_phase('export', n, d)
        print(f'{"export":7} {n:9d} {e["seconds"]:8.1f} {e["rows_per_s"]:9.0f} {e["rows_per_cpu_s"]:10.0f} {e["peak_rss_mb"]:12.1f} {e["mb_written"]:8.0f}  ({e["files"]} files)', flush=True)
        run_phase('write_output', n, d)
        i = run_phase('import', n, d)
        print(f'{"import":7} {n:9d} {i["seconds"]:8.1f} {i["rows_per_s"]:9.0f} {i["rows_per_cpu_s"]:10.0f} {i["peak_rss_mb"]:12.1f} {i["mb_read"]:8.0f}', flush=True)
        if not a.keep: shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__': main()
