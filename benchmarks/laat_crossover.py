"""The crossover sweep shown in the laat_few_shot tutorial: per dataset and shot count, data-only LR/MLP, the prior
alone, LAAT at gamma 100, LAAT auto (one gamma per shot count from all repetitions' cross-validation on their own
shots), LAAT auto per repetition (the same cross-validation, one gamma per repetition), and both with the prior
flipped on half its features (`crossover`). Writes the per-repetition results to CSV after each shot count, so a
run can be read while it goes; `--resume` skips the (dataset, shots) cells already in OUT.

    python benchmarks/laat_crossover.py OUT.csv [--datasets pima ...] [--shots 1 5 10 25 50 all] [--reps 20] [--archs lr mlp] [--resume]
"""
import argparse, os, time, warnings
import pandas as pd, torch
from llmkd.data import load_dataset
from llmkd.fewshot import crossover, max_shots

if __name__ == '__main__':
    warnings.filterwarnings('ignore')
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0]); p.add_argument('out')
    p.add_argument('--datasets', nargs='+', default=['pima', 'breast_cancer', 'birthwt', 'default', 'adult'])
    p.add_argument('--shots', nargs='+', default=['1', '5', '10', '25', '50', 'all'])
    p.add_argument('--reps', type=int, default=20); p.add_argument('--archs', nargs='+', default=['lr', 'mlp'])
    p.add_argument('--gamma', nargs='+', default=['100', 'auto', 'auto-rep'])
    p.add_argument('--resume', action='store_true')
    a = p.parse_args(); torch.set_num_threads(1)
    gamma = tuple(g if g.startswith('auto') else float(g) for g in a.gamma)
    out = [pd.read_csv(a.out)] if a.resume and os.path.exists(a.out) else []
    done = {(d, str(s)) for d, s in zip(out[0].dataset, out[0].shots)} if out else set()
    for name in a.datasets:
        ds = load_dataset(name); n_min = max_shots(ds)
        if name == 'adult': n_min = min(n_min, 50)  # 'all' on adult: 30k rows x 20 repetitions, out of reach on a CPU
        for s in a.shots:
            k = s if s == 'all' else int(s)
            if (name, str(k)) in done: continue
            if (k == 'all' and name == 'adult') or (k != 'all' and k > n_min): print(f"{name} {k}: skipped", flush=True); continue
            t = time.perf_counter()
            out.append(crossover(ds, 'shipped', (k,), a.reps, tuple(a.archs), gamma=gamma))
            pd.concat(out, ignore_index=True).to_csv(a.out, index=False)
            print(f"{name} {k}: {time.perf_counter() - t:.0f} s", flush=True)
