"""The crossover sweep shown in the laat_few_shot tutorial: per dataset and shot count, data-only LR/MLP, the prior
alone, LAAT at gamma 100, LAAT auto, and LAAT auto with the prior flipped on half its features (`crossover`).
Writes the per-repetition results to CSV after each dataset.

    python benchmarks/laat_crossover.py OUT.csv [--datasets pima ...] [--shots 1 5 10 25 50 all] [--reps 20] [--archs lr mlp]
"""
import argparse, time, warnings
import pandas as pd, torch
from llmkd.data import load_dataset
from llmkd.fewshot import crossover

if __name__ == '__main__':
    warnings.filterwarnings('ignore')
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0]); p.add_argument('out')
    p.add_argument('--datasets', nargs='+', default=['pima', 'breast_cancer', 'birthwt', 'default', 'adult'])
    p.add_argument('--shots', nargs='+', default=['1', '5', '10', '25', '50', 'all'])
    p.add_argument('--reps', type=int, default=20); p.add_argument('--archs', nargs='+', default=['lr', 'mlp'])
    a = p.parse_args(); torch.set_num_threads(1)
    out = []
    for name in a.datasets:
        ds = load_dataset(name); n_min = int(ds.df[~ds.is_test][ds.target].value_counts().min())
        for s in a.shots:
            k = s if s == 'all' else int(s)
            if k != 'all' and k > n_min: print(f"{name} {k}: skipped (a class has {n_min} training rows)", flush=True); continue
            t = time.perf_counter()
            out.append(crossover(ds, 'shipped', (k,), a.reps, tuple(a.archs)))
            pd.concat(out, ignore_index=True).to_csv(a.out, index=False)
            print(f"{name} {k}: {time.perf_counter() - t:.0f} s", flush=True)
