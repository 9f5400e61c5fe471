"""How many annotations SmolLM2-135M-Instruct needs on ELAD's arithmetic task: fine-tune on the teacher's gold
rationales of the first N pool questions (no selection, the same for every strategy) and score 100 held-out questions.
It tells how large an ELAD budget must be before the strategies can differ at all. One row per (lr, N, seed) to CSV.

    python benchmarks/elad_learning_curve.py OUT.csv [--sizes 16 64 256] [--lrs 5e-4 2e-3] [--full] [--epochs 2] [--seeds 0] [--no-base] [--threads 1]
"""
import argparse, copy, csv, os, platform, time, warnings
import torch
from transformers.utils import logging as hf_logging
hf_logging.disable_progress_bar(); hf_logging.set_verbosity_error(); warnings.filterwarnings('ignore', category=FutureWarning)
from llmkd.lm import load_lm
from llmkd.elad import make_arith_problems, format_rationale, LMStudent, evaluate_student

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0]); p.add_argument('out')
    p.add_argument('--sizes', nargs='+', type=int, default=[16, 64, 256]); p.add_argument('--lrs', nargs='+', type=float, default=[5e-4, 2e-3])
    p.add_argument('--epochs', type=int, default=2); p.add_argument('--seeds', nargs='+', type=int, default=[0])
    p.add_argument('--full', action='store_true', help='full fine-tuning instead of LoRA'); p.add_argument('--no-base', action='store_true', help='skip the untrained student (n = 0)'); p.add_argument('--threads', type=int, default=1)
    a = p.parse_args(); torch.set_num_threads(a.threads)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    machine = torch.cuda.get_device_name() if dev == 'cuda' else f'{os.cpu_count()}-core CPU ({platform.machine()}), no GPU'
    base, tok = load_lm(device=dev)
    pool, held = make_arith_problems(max(a.sizes), seed=0), make_arith_problems(100, seed=1)   # ELAD's pool and held-out draws
    new = not os.path.exists(a.out)
    f = open(a.out, 'a', newline=''); w = csv.DictWriter(f, ['lora', 'lr', 'epochs', 'n', 'seed', 'accuracy', 'step_accuracy', 'seconds', 'machine'])
    if new: w.writeheader()
    for seed in a.seeds:
        for lr in a.lrs:
            for n in ([0] if lr == a.lrs[0] and not a.no_base else []) + a.sizes:   # n = 0: the untrained student, once
                t0 = time.time(); torch.manual_seed(seed)
                stu = LMStudent(copy.deepcopy(base), tok, max_new_tokens=80, lr=lr, epochs=a.epochs, lora=not a.full, bs=64, train_bs=16, seed=seed)
                if n: stu.finetune([q.question for q in pool[:n]], [format_rationale(q.steps, q.answer) for q in pool[:n]])
                r = evaluate_student(stu, held)
                w.writerow(dict(lora=not a.full, lr=lr, epochs=a.epochs, n=n, seed=seed, seconds=round(time.time() - t0, 1), machine=machine, **r)); f.flush()
                print(f'lr {lr:g} n {n} seed {seed}: accuracy {r["accuracy"]:.2f}, step accuracy {r["step_accuracy"]:.2f} ({time.time() - t0:.0f} s)', flush=True)
