"""Step-time overhead of the LLKD sample-selection callback (target: ratio <= 1.05).

An MLP student over 384-d sentence embeddings (the size of all-MiniLM-L6-v2), pseudo-labels with teacher
confidences, trained with a fastai `Learner` for one epoch at a time: plain (batches `(x, y)`, mean cross-entropy,
no callback) against the same Learner with `ConfidenceSelector` (batches `(x, y, idx)`), with `ConfidenceSelector`
on the plain batches (`llkd-s`: the pool index taken from the DataLoader's sampler order, what users of TextDataLoaders,
TabularDataLoaders or a DataBlock get) and with the `all` baseline (the selector's plumbing without the LLKD math). Time per training step = wall time of the training
phase of an epoch / its number of batches (data loading, forward, loss, backward, optimiser step, callbacks),
synchronised at the epoch boundaries only; on CPU it is the thread's CPU time, on CUDA wall time. Runs are interleaved;
the table reports median times per step and the median over repeats of each repeat's time ratio.

    python benchmarks/selection_overhead.py                  # CUDA when available, else CPU (1 thread)
    python benchmarks/selection_overhead.py --device cpu --bs 256 1024 --repeats 7
"""
import argparse, platform, time
import numpy as np, torch, torch.nn as nn
from fastai.learner import Learner
from fastai.callback.core import Callback
from fastai.losses import CrossEntropyLossFlat
from fastai.data.core import DataLoaders
from torch.utils.data import TensorDataset
import fastai.callback.progress  # Learner.no_bar
from llmkd.callback.selection import selection_dls, TensorDL


class TrainTimer(Callback):
    "Wall time per training step of each epoch (synchronising the device at the epoch boundaries only)"
    order = 100
    def __init__(self): self.times = []
    def _sync(self):
        if self._cuda(): torch.cuda.synchronize()
    def _clock(self):
        "Wall time on CUDA; on CPU the thread's CPU time (1 thread), which time spent waiting for a busy CPU does not inflate"
        return time.perf_counter() if self._cuda() else time.thread_time()
    def _cuda(self): return self.dls.device is not None and torch.device(self.dls.device).type == 'cuda'
    def before_train(self): self._sync(); self.t0 = self._clock()
    def after_train(self):
        self._sync(); self.times.append((self._clock() - self.t0) / len(self.dl))


def student(d, c, h): return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Dropout(0.1), nn.Linear(h, c))


def make_learners(n, d, c, h, bs, device):
    g = torch.Generator().manual_seed(0)
    x, y, conf = torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g), torch.rand(n, generator=g)
    xv, yv = torch.randn(bs, d, generator=g), torch.randint(0, c, (bs,), generator=g)
    x, y, xv, yv = (t.to(device) for t in (x, y, xv, yv))
    plain_dls = DataLoaders(TensorDL(TensorDataset(x, y), bs=bs, shuffle=True), TensorDL(TensorDataset(xv, yv), bs=bs), device=device)
    sel_dls = selection_dls(x, y, xv, yv, bs=bs, device=device)
    def learner(dls, **sel):
        torch.manual_seed(0)
        learn = Learner(dls, student(d, c, h).to(device), loss_func=CrossEntropyLossFlat(), lr=1e-3, cbs=TrainTimer())
        return learn.llkd(conf, **sel) if sel else learn
    return {'plain': learner(plain_dls), 'llkd': learner(sel_dls, strategy='llkd', momentum=0.999, warmup=0.1),
            'llkd-s': learner(plain_dls, strategy='llkd', momentum=0.999, warmup=0.1), 'all': learner(sel_dls, strategy='all')}


def bench(n, d, c, h, bs, device, repeats):
    learners = make_learners(n, d, c, h, bs, device)
    for learn in learners.values():   # warm-up epoch (allocator, caches)
        with learn.no_bar(), learn.no_logging(): learn.fit(1)
        learn.train_timer.times.clear()
    for _ in range(repeats):          # interleaved, so that load changes hit every variant alike
        for learn in learners.values():
            with learn.no_bar(), learn.no_logging(): learn.fit(1)
    times = {k: np.array(l.train_timer.times) for k, l in learners.items()}
    ratios = {k: float(np.median(times[k] / times['plain'])) for k in ('llkd', 'llkd-s', 'all')}   # per interleaved repeat
    return {k: float(np.median(t)) for k, t in times.items()}, ratios, len(learners['plain'].dls.train)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--bs', type=int, nargs='+', default=[256, 1024])
    p.add_argument('--n', type=int, default=20_000, help='pool size')
    p.add_argument('--classes', type=int, default=10)
    p.add_argument('--hidden', type=int, default=256)
    p.add_argument('--repeats', type=int, default=9)
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.cuda.get_device_name() if a.device.startswith('cuda') else f'{platform.processor() or platform.machine()} CPU, {a.threads} thread(s)'
    print(f'device: {dev}; torch {torch.__version__}; pool {a.n} x 384, {a.classes} classes, MLP 384-{a.hidden}-{a.classes}, median of {a.repeats} epochs')
    print(f"{'bs':>6} {'steps':>6} {'plain ms':>9} {'llkd ms':>8} {'llkd-s ms':>10} {'all ms':>7} {'llkd/plain':>11} {'llkd-s/plain':>13} {'all/plain':>10}")
    for bs in a.bs:
        t, r, steps = bench(a.n, 384, a.classes, a.hidden, bs, a.device, a.repeats)
        print(f"{bs:>6} {steps:>6} {1e3*t['plain']:>9.3f} {1e3*t['llkd']:>8.3f} {1e3*t['llkd-s']:>10.3f} {1e3*t['all']:>7.3f} "
              f"{r['llkd']:>11.3f} {r['llkd-s']:>13.3f} {r['all']:>10.3f}")


if __name__ == '__main__': main()
