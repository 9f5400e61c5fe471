"""Overhead of LAAT's attribution penalty: time and peak memory of a training step with it vs without.

MLP Linear(F,100) -> ReLU -> Linear(100,1), batch 256, Adam, F = 30 and F = 200, all measured in one run:
- 'fastai' rows: one `Learner` training batch (forward, loss, callbacks, backward, step), timed per batch
  by a callback, with vs without `AttributionRegularizer` (batch-mean input gradient, the paper's method).
- 'torch' rows: the same step in a bare torch loop, the penalty from a double-backprop input gradient
  (the generic path, taken by models that do not start with a linear layer); 'torch-lin' rows: the same
  through the leading Linear's output h, g = mean_i(df/dh_i) W (what the callback does for this MLP).
- 'tabular' row: fastai's `tabular_learner` (layers [200, 100], BatchNorm, embeddings) on 4 categorical columns of
  5 levels and F - 20 continuous ones (F = scored inputs: 20 levels + the continuous columns), with vs without
  `.laat(prior)` on the level names; BatchNorm makes the callback run a second (float32, BN in eval) forward.
Peak memory: on CUDA, torch.cuda.max_memory_allocated over the step minus what was allocated before it;
on CPU, the peak of the running sum of the torch profiler's per-op self memory (allocations minus frees,
ordered by op start) during one step: tensor memory only, not the process RSS, and frees inside an op are
netted at its start, so it slightly underestimates a true peak. Time: median over interleaved repeats; on CPU the thread's CPU time (1 torch thread), so that other
processes on a shared machine do not inflate it; on CUDA synchronised wall time.

    python benchmarks/laat_overhead.py [--steps 60]
"""
import argparse, platform, time, statistics
import torch, torch.nn as nn, torch.nn.functional as F
from fastai.learner import Learner
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.callback.progress import ProgressCallback  # noqa: F401  (patches no_bar)
from llmkd.callback.attribution import AttributionRegularizer, transform_prior, penalty_from_output
from llmkd.callback.attribution import _capture_io, _linear_class_means, _penalty_from_means

torch.set_num_threads(1)
import warnings; warnings.filterwarnings('ignore', message='The given NumPy array is not writable')   # fastai 2.8 on pandas 3
dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
BS, HIDDEN = 256, 100

def mlp(n_in): return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1)).to(dev)
def bce(pred, y): return F.binary_cross_entropy_with_logits(pred.reshape(y.shape), y)
def sync():
    if dev.type == 'cuda': torch.cuda.synchronize()
# CPU: this thread's CPU time (torch runs on 1 thread), robust to other processes sharing the cores;
# CUDA: wall time after synchronising
clock = time.perf_counter if dev.type == 'cuda' else time.thread_time

def torch_step(model, opt, x, y, target, lin=False):
    "One bare training step; with `target`, plus gamma * LAAT penalty (reusing the forward, as the callback does)"
    opt.zero_grad(set_to_none=True)
    if target is not None and not lin: x = x.detach().requires_grad_()
    if target is not None and lin:   # through the first Linear's output h
        with _capture_io(model[0]) as io: out = model(x)
        loss = bce(out, y) + 100. * _penalty_from_means(*_linear_class_means(model[0], io[1], out[..., 0], None, 1), F.normalize(target, dim=0))[0].mean()
        loss.backward(); opt.step(); return
    out = model(x)
    loss = bce(out, y)
    if target is not None: loss = loss + 100. * penalty_from_output(out, x, target)[0].mean()
    loss.backward(); opt.step()

def step_peak_bytes(fn):
    "Peak tensor memory allocated during `fn()` above what was allocated before it"
    if dev.type == 'cuda':
        sync(); base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats(); fn(); sync()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof: fn()
    recs = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events())  # allocations/frees by op start
    cur = peak = 0
    for _, b in recs: cur += b; peak = max(peak, cur)
    return peak

class BatchTimer(Callback):
    "Wall time of each training batch, from before_batch to after_batch"
    order = -100
    def before_fit(self): self.times = []
    def before_batch(self):
        if self.training: sync(); self.t0 = clock()
    def after_batch(self):
        if self.training: sync(); self.times.append(clock() - self.t0)

def bench(n_in, steps):
    torch.manual_seed(0)
    x, y = torch.rand(BS, n_in, device=dev), torch.randint(0, 2, (BS,), device=dev).float()
    target = transform_prior(torch.randint(-10, 11, (n_in,)).float()).to(dev)
    # bare torch, interleaved
    models = {k: mlp(n_in) for k in ('base', 'laat', 'lin')}
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in models.items()}
    tgt = {'base': None, 'laat': target, 'lin': target}
    for _ in range(5):
        for k in models: torch_step(models[k], opts[k], x, y, tgt[k], k == 'lin')
    times = {k: [] for k in models}
    for _ in range(steps):
        for k in models:
            sync(); t0 = clock(); torch_step(models[k], opts[k], x, y, tgt[k], k == 'lin'); sync()
            times[k].append(clock() - t0)
    mem = {k: step_peak_bytes(lambda: torch_step(models[k], opts[k], x, y, tgt[k], k == 'lin')) for k in models}
    ms, mib = {k: statistics.median(times[k]) * 1e3 for k in models}, {k: mem[k] / 2**20 for k in models}
    rows = [(name, n_in, ms['base'], ms[k], mib['base'], mib[k]) for name, k in (('torch', 'laat'), ('torch-lin', 'lin'))]
    # fastai Learner, one epoch of `steps` batches each, alternating
    xs, ys = x.cpu().repeat(steps, 1), y.cpu().repeat(steps)
    dl = DataLoader(list(zip(xs, ys)), bs=BS, device=dev)
    vdl = DataLoader(list(zip(xs[:BS], ys[:BS])), bs=BS, device=dev)
    ftimes, fmem = {'base': [], 'laat': []}, {}
    learners = {k: Learner(DataLoaders(dl, vdl), mlp(n_in), loss_func=bce, cbs=BatchTimer()) for k in ('base', 'laat')}
    learners['laat'].laat(target.cpu())
    for rnd in range(3):
        for k, l in learners.items():
            with l.no_logging(), l.no_bar(): l.fit(1, 1e-3)
            if rnd: ftimes[k] += l.batch_timer.times[2:]
    if dev.type == 'cuda':
        for k, l in learners.items():
            with l.no_logging(), l.no_bar(): fmem[k] = step_peak_bytes(lambda: l.fit(1, 1e-3))
    rows.append(('fastai', n_in, *[statistics.median(ftimes[k]) * 1e3 for k in learners],
                 *[fmem[k] / 2**20 if fmem else float('nan') for k in learners]))
    return rows

def bench_tabular(n_in, steps):
    "fastai tabular_learner with vs without LAAT: median time per training batch"
    import numpy as np, pandas as pd
    from fastai.tabular.all import tabular_learner, TabularDataLoaders, Categorify, Normalize
    rng, n = np.random.default_rng(0), BS * steps
    cats, conts = [f'c{i}' for i in range(4)], [f'x{i}' for i in range(n_in - 20)]
    df = pd.DataFrame({**{c: rng.choice(list('abcde'), n) for c in cats}, **{c: rng.normal(size=n) for c in conts}})
    df['y'] = np.where(df[conts[0]] + (df.c0 == 'a') > 0, 'yes', 'no')
    dls = TabularDataLoaders.from_df(df, y_names='y', cat_names=cats, cont_names=conts, procs=[Categorify, Normalize],
                                     bs=BS, valid_idx=list(range(BS)), device=dev)
    prior = {f'{c}_{v}': float(rng.integers(-10, 11)) for c in cats for v in 'abcde'} | {c: float(rng.integers(-10, 11)) for c in conts}
    learners = {k: tabular_learner(dls, layers=[200, 100], cbs=BatchTimer()) for k in ('base', 'laat')}
    learners['laat'].laat(prior)
    times = {'base': [], 'laat': []}
    for rnd in range(3):
        for k, l in learners.items():
            with l.no_logging(), l.no_bar(): l.fit(1, 1e-3)
            if rnd: times[k] += l.batch_timer.times[2:]
    return ('tabular', n_in, *[statistics.median(times[k]) * 1e3 for k in learners], float('nan'), float('nan'))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=60)
    args = p.parse_args()
    name = torch.cuda.get_device_name() if dev.type == 'cuda' else f'{platform.processor() or platform.machine()} CPU, 1 thread'
    print(f'device: {dev} ({name}); torch {torch.__version__}; MLP F->{HIDDEN}->1, batch {BS}, {args.steps} timed steps')
    print(f'time: {"synchronised wall time" if dev.type == "cuda" else "thread CPU time (time.thread_time)"}, median per step')
    print(f'memory: {"torch.cuda.max_memory_allocated" if dev.type == "cuda" else "torch profiler per-op self memory, running sum (tensor memory; torch rows only, fastai rows need CUDA)"}')
    hdr = f'{"loop":9} {"F":>4} {"ms base":>8} {"ms laat":>8} {"time x":>7} {"MiB base":>9} {"MiB laat":>9} {"mem x":>6}'
    print(hdr); print('-' * len(hdr))
    for n_in in (30, 200):
        for loop, f, tb, tl, mb, ml in bench(n_in, args.steps) + [bench_tabular(n_in, args.steps)]:
            print(f'{loop:9} {f:>4} {tb:8.3f} {tl:8.3f} {tl / tb:7.2f} {mb:9.2f} {ml:9.2f} {ml / mb if mb == mb and mb else float("nan"):6.2f}')
