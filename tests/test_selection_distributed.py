"""LLKD selection under torch.distributed: 2 CPU processes (gloo, 127.0.0.1) against one process.

Each rank sees half of every global batch; one process sees the concatenated batches. The selector all-reduces
its batch statistics and normalises the loss by the global counts, so thresholds, selected sets and (through
DDP's gradient averaging) the trained weights must agree with the single-process run.
Run directly as `python tests/test_selection_distributed.py RANK PORT OUTDIR` it is one rank of the group.
"""
import socket, subprocess, sys
from pathlib import Path
import torch, torch.nn as nn, torch.distributed as dist
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import SGD
import fastai.callback.progress  # Learner.no_bar
from llmkd.callback.selection import selection_dls, ConfidenceSelector

N, B, C, D, EPOCHS = 48, 12, 3, 8, 2   # pool size, global batch, classes, features, epochs
WORLD = 2


def problem():
    "A small pool with pseudo-labels and teacher confidences, a validation set, and the visiting order of the pool"
    g = torch.Generator().manual_seed(0)
    x, y, conf = torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g), torch.rand(N, generator=g)
    xv, yv = torch.randn(16, D, generator=g), torch.randint(0, C, (16,), generator=g)
    return x, y, conf, xv, yv, torch.randperm(N, generator=g)


def rank_order(perm, rank, world):
    "Pool indices a rank visits: its slice of each global batch of B (one process: all of them)"
    h = B // world
    return torch.cat([perm[k*B + rank*h: k*B + (rank+1)*h] for k in range(N // B)])


def train(rank=0, world=1):
    "Fit a small MLP with the LLKD selector; return thresholds, per-step history, used set and weights"
    torch.set_num_threads(1)
    x, y, conf, xv, yv, perm = problem()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Linear(16, C))
    if world > 1: model = nn.parallel.DistributedDataParallel(model)
    dls = selection_dls(x, y, xv, yv, bs=B // world, shuffle=False)
    order = rank_order(perm, rank, world).tolist()
    dls.train = dls.train.new(get_idxs=lambda: order)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=SGD, lr=0.5)
    learn.llkd(conf, momentum=0.6, warmup=2)
    with learn.no_bar(), learn.no_logging(): learn.fit(EPOCHS)
    sel = learn.selector
    net = model.module if world > 1 else model
    return dict(thresholds=torch.stack(sel.thresholds()), tau=torch.stack([sel.tau_t, sel.tau_s]),
                history=torch.tensor(sel.history.values), used=sel.used.clone(), n_steps=sel.n_steps,
                weights=torch.cat([p.detach().flatten() for p in net.parameters()]),
                valid_loss=torch.tensor(learn.recorder.values[-1][1]))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    port = free_port()
    procs = [subprocess.Popen([sys.executable, __file__, str(r), str(port), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    r0, r1 = (torch.load(tmp_path/f'rank{r}.pt') for r in range(WORLD))
    one = train()
    assert r0['n_steps'] == r1['n_steps'] == one['n_steps'] == EPOCHS * N // B
    # identical on both ranks (bit for bit: every rank computes from the same all-reduced sums)
    for k in ('thresholds', 'tau', 'history', 'used', 'weights'): assert torch.equal(r0[k], r1[k]), k
    # equal to one process on the concatenated batches (up to float summation order)
    for k in ('thresholds', 'tau', 'history', 'weights', 'valid_loss'):
        torch.testing.assert_close(r0[k], one[k].to(r0[k].dtype), rtol=1e-5, atol=1e-6, msg=k)
    assert torch.equal(r0['used'], one['used'])
    # the case is not trivial: selection happened and left some of the pool out; the thresholds moved per class
    assert 0 < one['used'].sum() < N
    assert not torch.allclose(one['thresholds'][0], one['thresholds'][0][0])


if __name__ == '__main__':
    rank, port, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=WORLD)
    try: torch.save(train(rank, WORLD), out/f'rank{rank}.pt')
    finally: dist.destroy_process_group()
