"End-to-end tests of the `llmkd` console script: `llmkd priors` against a local test server, a tiny `llmkd demo`."
import json, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest

from llmkd.testing import LLMServer
from llmkd.priors import AttributionPrior


def _llmkd():
    exe = Path(sys.executable).parent/'llmkd'
    exe = str(exe) if exe.exists() else shutil.which('llmkd')
    if exe is None: pytest.skip('the llmkd console script is not installed (pip install -e .)')
    return exe


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ('OPENAI_BASE_URL', 'LLMKD_MODEL', 'OPENAI_API_KEY')}
    env.update(LLMKD_CACHE_DIR=str(tmp_path/'cache'), MPLBACKEND='Agg', **extra)
    return env


def _scorer(body):
    "Score every feature the prompt lists: +4 for `income`, +2 for dummies of `job`, -1 for the rest."
    user = body['messages'][-1]['content']
    feats = re.findall(r'^\d+\. ([^:]+):', user, flags=re.M)
    score = lambda f: 4 if f == 'income' else 2 if f.startswith('job_') else -1
    return json.dumps({'reasoning': 'step by step', 'scores': [{'feature': f, 'score': score(f)} for f in feats]})


def _write_data(tmp_path):
    csv = tmp_path/'loans.csv'
    csv.write_text('income,age,job,default\n30,25,clerk,yes\n80,40,manager,no\n55,33,clerk,no\n20,51,driver,yes\n')
    desc = tmp_path/'desc.txt'
    desc.write_text('income: yearly income in thousands of dollars\nage: age in years\njob: occupation\n')
    return csv, desc


def test_priors_end_to_end(tmp_path):
    "`llmkd priors` asks the server once per class with n estimates, and writes a prior with one-hot features."
    csv, desc = _write_data(tmp_path)
    secret = 'sk-test-secret-123456789'
    with LLMServer(_scorer) as srv:
        r = subprocess.run([_llmkd(), 'priors', str(csv), str(desc), '--target', 'default', '--positive-class', 'yes',
                            '--task', 'Predict whether a borrower defaults on a loan.', '--model', 'tiny-test',
                            '--base-url', srv.base_url, '--n-estimates', '3', '--out', str(tmp_path/'prior.json')],
                           capture_output=True, text=True, env=_env(tmp_path, OPENAI_API_KEY=secret), timeout=120)
        assert r.returncode == 0, r.stderr
        assert srv.requests and all(q['model'] == 'tiny-test' for q in srv.requests)
        assert sum(q.get('n', 1) for q in srv.requests) == 3  # one class scored, 3 estimates
    p = AttributionPrior.load(tmp_path/'prior.json')
    assert p.features == ['income', 'age', 'job_clerk', 'job_driver', 'job_manager']
    assert p.classes == ['yes'] and p.n_estimates == 3
    assert p.scores['yes'].to_dict() == {'income': 4., 'age': -1., 'job_clerk': 2., 'job_driver': 2., 'job_manager': 2.}
    assert p.provenance['model'] == 'tiny-test' and p.provenance['endpoint'].startswith('127.0.0.1')
    assert 'written to' in r.stdout
    for text in (r.stdout, r.stderr, (tmp_path/'prior.json').read_text()): assert secret not in text


def test_priors_user_error(tmp_path):
    "A description file that misses a column gives a one-line error naming it, exit status 2, no traceback."
    csv, desc = _write_data(tmp_path)
    desc.write_text('income: yearly income\n')
    with LLMServer(_scorer) as srv:
        r = subprocess.run([_llmkd(), 'priors', str(csv), str(desc), '--target', 'default', '--task', 'Predict default.',
                            '--model', 'm', '--base-url', srv.base_url, '--out', str(tmp_path/'p.json')],
                           capture_output=True, text=True, env=_env(tmp_path), timeout=120)
        assert srv.requests == []
    assert r.returncode == 2
    assert 'llmkd priors: error:' in r.stderr and 'age' in r.stderr and 'job' in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'p.json').exists()


def test_demo_tiny(tmp_path):
    "`llmkd demo` with 2 repetitions and 1 shot prints the table and writes the PNG and CSV."
    png, csv = tmp_path/'demo.png', tmp_path/'res.csv'
    r = subprocess.run([_llmkd(), 'demo', '--datasets', 'pima', 'breast_cancer', '--reps', '2', '--shots', '1',
                        '--epochs', '20', '--out', str(png), '--csv', str(csv)],
                       capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'LR + LAAT' in r.stdout and 'breast_cancer' in r.stdout and str(png) in r.stdout
    lines = csv.read_text().splitlines()
    assert len(lines) == 1 + 2*2*10  # header + datasets x reps x methods (8 students, the prior alone, sklearn LR)
    assert "LAAT auto against its parts" in r.stdout


def test_priors_quota_error_in_cli_words(tmp_path):
    "An exhausted quota ends the run at once with exit status 1 and a message about the quota, not about timeouts or Python arguments."
    csv, desc = _write_data(tmp_path)
    with LLMServer(_scorer) as srv:
        srv.inject('rate_limit', times=5, code='insufficient_quota', message='You exceeded your current quota')
        r = subprocess.run([_llmkd(), 'priors', str(csv), str(desc), '--target', 'default', '--task', 'Predict default.',
                            '--model', 'm', '--base-url', srv.base_url, '--out', str(tmp_path/'p.json'), '--max-retries', '4'],
                           capture_output=True, text=True, env=_env(tmp_path), timeout=120)
        assert len(srv.requests) == 1
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    assert 'quota' in r.stderr and 'return_exceptions' not in r.stderr and 'timeout' not in r.stderr


def test_priors_batch_goes_through_the_batch_api(tmp_path):
    "`llmkd priors --batch` submits the requests as a batch (uploaded file, /v1/batches) and sends nothing online."
    from llmkd.batch import BatchServer
    csv, desc = _write_data(tmp_path)
    with BatchServer(_scorer) as srv:
        r = subprocess.run([_llmkd(), 'priors', str(csv), str(desc), '--target', 'default', '--positive-class', 'yes',
                            '--task', 'Predict default.', '--model', 'm', '--base-url', srv.base_url, '--n-estimates', '2',
                            '--batch', '--poll-interval', '0.05', '--out', str(tmp_path/'p.json')],
                           capture_output=True, text=True, env=_env(tmp_path), timeout=120)
        assert r.returncode == 0, r.stderr
        assert srv.requests == [] and len(srv.batch_rows) >= 1
    prior = AttributionPrior.load(tmp_path/'p.json')
    assert prior.n_estimates == 2 and set(prior.scores.index) >= {'income', 'age'}


def test_distill_dry_run_pays_nothing(tmp_path):
    "`llmkd distill --teacher llm --dry-run` prints the estimate (online and batch price) and sends no request."
    csv = tmp_path/'reviews.csv'
    csv.write_text('text\n"A warm, funny film."\n"Dull and far too long."\n"The cast is superb."\n')
    with LLMServer() as srv:
        r = subprocess.run([_llmkd(), 'distill', '--csv', str(csv), '--labels', 'pos,neg', '--teacher', 'llm', '--model', 'm',
                            '--base-url', srv.base_url, '--dry-run', '--out', str(tmp_path/'out')],
                           capture_output=True, text=True, env=_env(tmp_path), timeout=300)
        assert srv.requests == []
    assert r.returncode == 0, r.stderr
    assert 'estimate: 3 requests' in r.stdout
