"`benchmarks/gpu_evidence.sh tiny`: the GPU evidence script end to end on a tiny random model (a test of the script, not evidence)."
import csv, json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).parents[1]


def _run(out):
    env = dict(os.environ, PYTHON=sys.executable, LLMKD_THREADS='1')
    return subprocess.run(['bash', str(ROOT/'benchmarks/gpu_evidence.sh'), 'tiny', str(out), 'both'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_gpu_evidence_tiny(tmp_path):
    "Both CSVs get one row per strategy/seed/round and method/size/seed, every run is collected, and a rerun resumes."
    r = _run(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    elad = list(csv.DictReader(open(tmp_path/'elad_evidence.csv')))
    assert sorted({x['strategy'] for x in elad}) == ['disagreement', 'elad', 'least_confidence', 'random']
    assert len(elad) == 4*3                                             # rounds 0 (the untrained student), 1 and 2
    assert all(0 <= float(x['accuracy']) <= 1 and x['machine'] for x in elad)
    budget = json.loads(elad[0]['settings'])['budget']                  # every strategy's teacher tokens fit the same budget
    assert all(int(x['tokens']) <= budget for x in elad) and all(int(x['tokens']) > 0 for x in elad if x['round'] == '2')
    tell = list(csv.DictReader(open(tmp_path/'tell_evidence.csv')))
    assert sorted((x['method'], x['n_task']) for x in tell) == sorted((m, n) for m in ('TELL 0', 'TELL 10', 'FT 1x', 'FT 10x') for n in ('2', '4'))
    assert all(0 <= float(x['format_valid']) <= 1 for x in tell)
    runs = [l for l in r.stdout.splitlines() if ' s, ' in l and 'alive' in l]
    assert len(runs) == 4 + 8 and all(' 0 Learner(s) alive' in l for l in runs), runs   # no run's model outlives it
    r2 = _run(tmp_path)                                                 # everything is in the CSVs: nothing reruns
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stdout.count('already in the CSV') == 4 + 8
    assert len(list(csv.DictReader(open(tmp_path/'elad_evidence.csv')))) == len(elad)
