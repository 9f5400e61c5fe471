"`benchmarks/laat_cv_scoring.py` at a tiny size: the replay data behind `gamma='auto'` is what `choose_gamma` computes (a test of the script, not evidence)."
import os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, torch

ROOT = Path(__file__).parents[1]


def _run(out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, str(ROOT/'benchmarks/laat_cv_scoring.py'), str(out), '--datasets', 'pima', '--shots', '5',
                           '--archs', 'lr', '--reps', '3', *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_laat_cv_scoring_tiny(tmp_path):
    "One row per prior, repetition and gamma; the scores agree with `choose_gamma`'s own table; a rerun with --resume adds nothing."
    from llmkd.data import load_dataset, shipped_prior
    from llmkd.fewshot import AUTO_GRID, choose_gamma, fewshot_splits, scale_by_shots
    out = tmp_path/'cv.csv'
    r = _run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    d = pd.read_csv(out)
    assert len(d) == 2*3*len(AUTO_GRID) and set(d.prior) == {'shipped', 'flipped'}
    assert np.allclose(d.cv_fold, d[[f'cv_fold{k}' for k in range(1, 6)]].mean(axis=1), atol=1e-5)   # the mean of the folds' own AUCs
    alone = d[np.isinf(d.gamma)]
    assert np.allclose(alone.test_auc, alone.prior_alone)                                              # gamma inf is the prior alone
    ds = load_dataset('pima'); X, y, feats = ds.encoded()                                               # the shipped prior's shots, as the script draws them
    tr, te = fewshot_splits(y, 5, 3, 5000, ds.is_test)
    xs, _ = scale_by_shots(X, tr, te[:, :1])
    _, cv = choose_gamma(torch.as_tensor(xs, dtype=torch.float32), torch.as_tensor(y[tr]), shipped_prior('pima'), feats, return_cv=True)
    sh = d[d.prior == 'shipped'].pivot(index='rep', columns='gamma', values='cv_pooled')
    assert np.allclose(sh.to_numpy(), cv['auc'].to_numpy(), atol=1e-5)                                 # the pooled AUC choose_gamma ranks
    f3 = d[d.prior == 'shipped'].pivot(index='rep', columns='gamma', values='cv_fold3')
    assert np.allclose(f3.to_numpy(), cv['fold 3'].to_numpy(), atol=1e-5)                              # and each fold's AUC it tests
    r2 = _run(out, '--resume')
    assert r2.returncode == 0 and r2.stdout.strip() == '', r2.stdout
    assert len(pd.read_csv(out)) == len(d)
