#!/usr/bin/env bash
# ELAD and TELL comparisons with SmolLM2-135M-Instruct as the student, writing CSV rows as each run finishes.
#   ELAD: ELAD vs random vs answer disagreement vs least confidence at equal teacher tokens (same b, same budget),
#         >=100 held-out questions, 3 seeds, 4 rounds of 64 from a pool of 512 (256 annotations: where SmolLM2 + LoRA
#         learns the task at LoRA lr 2e-3, benchmarks/elad_learning_curve.py) -> $OUT/elad_evidence.csv (one row per strategy, seed and round)
#   TELL: SmolLM2 + LoRA, 10 and 30 task examples, TELL at general ratios 0 and 10, plain fine-tuning at 1x and 10x,
#         100 held-out dates, 3 seeds -> $OUT/tell_evidence.csv (one row per method, size and seed)
# Usage: benchmarks/gpu_evidence.sh [full|cpu|cpu-learn|tiny] [out_dir] [elad|tell|both]
#   Resumable: runs already complete in out_dir's CSVs are skipped. LLMKD_SEEDS=1,2 overrides the seeds;
#   LLMKD_STRATEGIES=elad,random runs only those ELAD strategies; LLMKD_SIZES=30 only those TELL task sizes.
#   LLMKD_METHODS='TELL 10 3ep,TELL 0 3ep' runs those TELL arms ('TELL r' = general ratio r, 1 epoch; 'TELL r Nep' = N epochs).
#   full: the sizes above, SmolLM2 on the GPU (or the CPU when there is none: many hours).
#   cpu:  a reduced SmolLM2 run for a small CPU (ELAD: 32 pool, 100 held-out, 1 seed, 4 rounds of 4, LoRA student;
#         TELL: 10 task examples, 100 held-out, 1 seed): hours on a shared 2-core CPU, and one seed settles nothing.
#   cpu-learn: ELAD only, at a budget where SmolLM2 + LoRA starts to learn on a 2-core CPU (pool 128, 4 rounds of 16 =
#         64 annotations, LoRA lr 2e-3: 0.22 after 64 gold rationales in elad_learning_curve.csv), 3 seeds; on a 2-core CPU
#         23-28 min per ELAD seed, 9 for random, 15-20 for answer disagreement and least confidence.
#   tiny: the same code on a tiny random model at a toy size (about a minute on a CPU): a test of the script, not evidence.
set -euo pipefail
SIZE=${1:-full}; OUT=${2:-benchmarks/gpu_evidence_out}; WHAT=${3:-both}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}; [ -x "$PY" ] || PY=python
export HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error
"$PY" - "$SIZE" "$OUT" "$WHAT" <<'PYEOF'
import sys, os, copy, gc, json, random, datetime, platform, time, csv
import numpy as np, torch
size, out, what = sys.argv[1], sys.argv[2], sys.argv[3]
if size not in ('full', 'cpu', 'cpu-learn', 'tiny'): sys.exit(f'size {size!r}: use full, cpu, cpu-learn or tiny')
tiny = size == 'tiny'
if size == 'cpu-learn' and what == 'tell': sys.exit('cpu-learn is an ELAD size only: use cpu or full for TELL')
if size == 'cpu-learn' and what == 'both': print('cpu-learn is an ELAD size only: running ELAD (TELL: use cpu or full)', flush=True)
if size == 'cpu-learn': what = 'elad'
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
if dev == 'cpu': torch.set_num_threads(int(os.environ.get('LLMKD_THREADS', 1 if tiny else 2)))
print(f'size {size}, device {dev}', flush=True)
machine = torch.cuda.get_device_name() if dev == 'cuda' else f'{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), no GPU'
from llmkd.lm import load_lm, tiny_lm, lm_items, lm_dls, lm_learner, generate
from llmkd.elad import (make_arith_problems, LMStudent, OfflineArithTeacher, run_elad, ELADSelection, RandomSelection,
                        DisagreementSelection, LeastConfidenceSelection)
from llmkd.tell import AnchorPrompt, tell_dls, tell_learner, general_pairs, RG_TASKS, GENERAL

if tiny: base, tok = tiny_lm('bytes', seed=0)
else: base, tok = load_lm(device=dev)

def done_runs(path, key, last):
    "Keys of the runs a CSV already holds in full (`last(row)` marks a run's final row); partial runs are dropped from the file."
    if not os.path.exists(path): return set()
    rows = list(csv.DictReader(open(path)))
    done = {key(r) for r in rows if last(r)}
    keep = [r for r in rows if key(r) in done]
    if len(keep) < len(rows):
        with open(path, 'w', newline='') as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(keep)
    return done

def alive():
    "How many fastai Learners are still in memory after a run (0 once it is collected), and the process's peak RSS."
    from fastai.learner import Learner
    import resource
    return f'{sum(isinstance(o, Learner) for o in gc.get_objects())} Learner(s) alive, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20:.1f} GB'

def writer(path, fields):
    "Append rows to a CSV as they come (header once)."
    new = not os.path.exists(path)
    f = open(path, 'a', newline=''); w = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
    if new: w.writeheader(); f.flush()
    def write(row): w.writerow(row); f.flush()
    return write

# ---------------- ELAD ----------------
E = (dict(n_pool=12, n_heldout=6, seeds=(0,), rounds=2, b=3, n_samples=2, max_new_tokens=24, lr=5e-3, epochs=1, lora=False) if tiny else
     dict(n_pool=32, n_heldout=100, seeds=(0,), rounds=4, b=4, n_samples=2, max_new_tokens=80, lr=5e-4, epochs=2, lora=True) if size == 'cpu' else
     dict(n_pool=128, n_heldout=100, seeds=(0, 1, 2), rounds=4, b=16, n_samples=2, max_new_tokens=80, lr=2e-3, epochs=2, lora=True) if size == 'cpu-learn' else
     dict(n_pool=512, n_heldout=100, seeds=(0, 1, 2), rounds=4, b=64, n_samples=4, max_new_tokens=80, lr=2e-3, epochs=2, lora=True))
if os.environ.get('LLMKD_SEEDS'): E['seeds'] = tuple(int(x) for x in os.environ['LLMKD_SEEDS'].split(','))
if what in ('elad', 'both'):
    teacher = OfflineArithTeacher(max_tokens=80)
    E['budget'] = E['rounds'] * E['b'] * teacher.max_cost     # every strategy may spend the same tokens
    pool, held = make_arith_problems(E['n_pool'], seed=0), make_arith_problems(E['n_heldout'], seed=1)
    fields = ['strategy', 'seed', 'round', 'tokens', 'prompt_tokens', 'requests', 'annotated', 'failed', 'accuracy', 'step_accuracy',
              'seconds', 'machine', 'settings']
    done = done_runs(f'{out}/elad_evidence.csv', lambda r: (r['strategy'], int(r['seed'])), lambda r: int(r['round']) == E['rounds'])
    write = writer(f'{out}/elad_evidence.csv', fields)
    for seed in E['seeds']:
        for sel in [ELADSelection(), RandomSelection(), DisagreementSelection(), LeastConfidenceSelection()]:
            if os.environ.get('LLMKD_STRATEGIES') and sel.name not in os.environ['LLMKD_STRATEGIES'].split(','): continue
            if (sel.name, seed) in done: print(f'ELAD {sel.name} seed {seed}: already in the CSV', flush=True); continue
            torch.manual_seed(seed)
            stu = LMStudent(copy.deepcopy(base), tok, max_new_tokens=E['max_new_tokens'], answer_tokens=6, lr=E['lr'], epochs=E['epochs'],
                            lora=E['lora'], bs=256 if dev == 'cuda' else 32, train_bs=16, seed=seed)
            log = lambda row: write(dict(row, seed=seed, machine=machine, settings=json.dumps(E)))
            t0 = time.time()
            run_elad(stu, teacher, pool, held, sel, rounds=E['rounds'], b=E['b'], budget=E['budget'], n_samples=E['n_samples'],
                     max_steps=4, seed=seed, log=log)
            del stu; gc.collect()   # fastai Learners are reference cycles: without a collection each run's model copy stays alive
            print(f'ELAD {sel.name} seed {seed}: {time.time()-t0:.0f} s, {alive()}', flush=True)

# ---------------- TELL ----------------
MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December']
def ordinal(d): return f"{d}{'th' if 10 <= d % 100 <= 20 else {1:'st', 2:'nd', 3:'rd'}.get(d % 10, 'th')}"
STYLES = [lambda y,m,d: f'{d} {MONTHS[m-1]} {y}', lambda y,m,d: f'{MONTHS[m-1]} {d}, {y}', lambda y,m,d: f'{y}-{m:02d}-{d:02d}',
          lambda y,m,d: f'{MONTHS[m-1][:3]}. {d} {y}', lambda y,m,d: f'the {ordinal(d)} of {MONTHS[m-1]}, {y}',
          lambda y,m,d: f'{d:02d}/{MONTHS[m-1][:3]}/{y}']
def date_pairs(n, seed, exclude=()):
    "`n` distinct (date text, JSON answer) pairs (as in the TELL tutorial)."
    rng, res, seen = random.Random(seed), [], set(exclude)
    while len(res) < n:
        day = datetime.date(1900, 1, 1) + datetime.timedelta(days=rng.randrange(200*365))
        q = rng.choice(STYLES)(day.year, day.month, day.day)
        if q in seen: continue
        seen.add(q); res.append((q, json.dumps({'year': day.year, 'month': day.month, 'day': day.day})))
    return res
def parse(text):
    try: o = json.loads(text)
    except (json.JSONDecodeError, TypeError): return None
    if not isinstance(o, dict) or list(o) != ['year', 'month', 'day'] or not all(type(v) is int for v in o.values()): return None
    return tuple(o.values())
anchor = AnchorPrompt('### DATE2JSON\nRewrite the date below as a JSON object with integer fields "year", "month", "day", in that order.')
plain = lambda q: f'Convert this date to JSON: {q}'

T = (dict(sizes=(2, 4), methods=('TELL 0', 'TELL 10', 'FT 1x', 'FT 10x'), seeds=(0,), n_eval=8, lr=3e-3, lora=False, bs=8,
          max_len=128, ft_epochs=2, general_kw=dict(max_chars=80, rg_names=('basic_arithmetic', 'chain_sum'))) if tiny else
     dict(sizes=(10,) if size == 'cpu' else (10, 30), methods=('TELL 0', 'TELL 10', 'FT 1x', 'FT 10x'), seeds=(0,) if size == 'cpu' else (0, 1, 2),
          n_eval=100, lr=2e-4, lora=True, bs=16, max_len=384, ft_epochs=3, general_kw=dict(bbc_frac=0.2, max_chars=600)))
if os.environ.get('LLMKD_SEEDS'): T['seeds'] = tuple(int(x) for x in os.environ['LLMKD_SEEDS'].split(','))
if os.environ.get('LLMKD_SIZES'): T['sizes'] = tuple(int(x) for x in os.environ['LLMKD_SIZES'].split(','))
if os.environ.get('LLMKD_METHODS'): T['methods'] = tuple(os.environ['LLMKD_METHODS'].split(','))
def tell_spec(m):
    "'TELL 10' -> (ratio 10, 1 epoch); 'TELL 10 3ep' -> (10, 3 epochs): as many passes over the task rows as plain fine-tuning."
    w = m.split(); return int(w[1]), int(w[2].removesuffix('ep')) if len(w) > 2 else 1
if what in ('tell', 'both'):
    done = done_runs(f'{out}/tell_evidence.csv', lambda r: (r['method'], int(r['n_task']), int(r['seed'])), lambda r: True)
    write = writer(f'{out}/tell_evidence.csv', ['method', 'n_task', 'seed', 'format_valid', 'accuracy', 'steps', 'seconds', 'example', 'machine', 'settings'])
    for seed in T['seeds']:
        ratio = max([tell_spec(m)[0] for m in T['methods'] if m.startswith('TELL')] + [0])
        gen = general_pairs(ratio*max(T['sizes']), seed=seed, **T['general_kw'])
        general = lm_items(tok, gen.prompt, gen.response, max_len=T['max_len'], sources=[GENERAL]*len(gen))
        evalset = date_pairs(T['n_eval'], seed+1000, exclude=[q for q, _ in date_pairs(10*max(T['sizes']), seed)])
        for n in T['sizes']:
            for m in T['methods']:
                if (m, n, seed) in done: print(f'TELL {m} n={n} seed {seed}: already in the CSV', flush=True); continue
                t0 = time.time(); torch.manual_seed(seed); model = copy.deepcopy(base)
                if m.startswith('TELL'):
                    r, epochs = tell_spec(m)
                    dls = tell_dls(tok, anchor, date_pairs(n, seed), general, ratio=r, seed=seed, bs=T['bs'], max_len=T['max_len'], device=dev)
                    learn = tell_learner(dls, model, lora=T['lora'], lr=T['lr'])
                else:
                    task = date_pairs(n*(10 if m == 'FT 10x' else 1), seed)
                    dls = lm_dls(tok, lm_items(tok, [plain(q) for q, _ in task], [r for _, r in task], max_len=T['max_len']), bs=T['bs'], seed=seed, device=dev)
                    learn, epochs = lm_learner(dls, model, lora=T['lora'], lr=T['lr']), T['ft_epochs']
                with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, T['lr'])
                qs, golds = [q for q, _ in evalset], [parse(a) for _, a in evalset]
                kw = dict(max_new_tokens=32, bs=100)
                preds = anchor.generate(learn.model, tok, qs, **kw) if m.startswith('TELL') else generate(learn.model, tok, [plain(q) for q in qs], **kw)
                p = [parse(x) for x in preds]
                write(dict(method=m, n_task=n, seed=seed, format_valid=np.mean([x is not None for x in p]),
                           accuracy=np.mean([x is not None and x == g for x, g in zip(p, golds)]), steps=len(dls.train)*epochs,
                           seconds=round(time.time()-t0, 1), example=preds[0], machine=machine, settings=json.dumps(T)))
                del learn, dls, model; gc.collect()   # as above: each arm's model copy and optimiser state (24 GB after 8 SmolLM2 arms without it)
                print(f'TELL {m} n={n} seed {seed}: {time.time()-t0:.0f} s, {alive()}', flush=True)
print('done:', out)
PYEOF
