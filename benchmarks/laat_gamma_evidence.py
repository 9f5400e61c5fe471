"""Evidence for `gamma='auto'`: test AUC of LAAT at every gamma of the grid and the out-of-fold AUC that
`choose_gamma` sees, per dataset, shot count and repetition, with the shipped prior and with it flipped on half
its features. The candidate gamma = inf is the prior alone (its test AUC is the prior-alone row, its out-of-fold AUC
the prior's score on the held-out folds). Any selection rule, per repetition or pooled over the repetitions of a
cell, can then be scored offline (see the laat_few_shot tutorial).

    python benchmarks/laat_gamma_evidence.py OUT.csv [--datasets pima ...] [--archs lr] [--reps 10]
"""
import argparse, time, warnings
import numpy as np, pandas as pd, torch
from llmkd.data import load_dataset, shipped_prior
from llmkd.fewshot import AUTO_GRID, GAMMA_GRID, choose_gamma, fewshot_splits, flip_prior, run_fewshot, scale_by_shots

def evidence(name, prior_kind, k, arch, reps, seed=0):
    ds = load_dataset(name); prior = shipped_prior(name)
    if prior_kind == 'flipped': prior = flip_prior(prior)
    res = run_fewshot(ds, prior, [k], reps, (arch,), gamma=list(GAMMA_GRID[1:]), sklearn=False, prior_alone=True, seed=seed)
    res['gamma'] = res['gamma'].where(res.laat, 0.)
    test = res[res.method != 'prior alone'].pivot_table(index='rep', columns='gamma', values='auc')
    X, y, feats = ds.encoded()
    tr, te = fewshot_splits(y, k, reps, seed + (1000*k if isinstance(k, int) else 0), ds.is_test)
    xs, _ = scale_by_shots(X, tr, te[:, :1])
    _, cv = choose_gamma(xs, y[tr], prior, feats, arch, seed=seed, return_cv=True)
    n_pos = int(np.minimum(y[tr].sum(1), 2000).min()); n_neg = int(np.minimum((1 - y[tr]).sum(1), 2000).min())
    out = []
    for r in range(reps):
        alone = res[(res.method == 'prior alone') & (res.rep == r)].auc.item()
        for g in AUTO_GRID:
            out.append(dict(dataset=name, prior=prior_kind, shots=k, arch=arch, rep=r, gamma=g, test_auc=alone if np.isinf(g) else test.loc[r, g],
                            cv_auc=cv['auc'].loc[r, g], prior_alone=alone, n_pos=n_pos, n_neg=n_neg))
    return out

if __name__ == '__main__':
    warnings.filterwarnings('ignore')
    p = argparse.ArgumentParser(); p.add_argument('out'); p.add_argument('--datasets', nargs='+', default=['pima', 'breast_cancer', 'birthwt', 'default'])
    p.add_argument('--archs', nargs='+', default=['lr']); p.add_argument('--reps', type=int, default=10)
    p.add_argument('--shots', nargs='+', default=['1', '5', '10', '25', '50', 'all'])
    a = p.parse_args(); torch.set_num_threads(1)
    rows = []
    for name in a.datasets:
        for arch in a.archs:
            for kind in ('shipped', 'flipped'):
                for k in [int(s) if s != 'all' else s for s in a.shots]:
                    t = time.perf_counter()
                    try: rows += evidence(name, kind, k, arch, a.reps)
                    except ValueError as e: print(f"{name} {k}: skipped ({e})"); continue
                    pd.DataFrame(rows).to_csv(a.out, index=False)
                    print(f"{name} {arch} {kind} {k}: {time.perf_counter() - t:.0f} s", flush=True)
