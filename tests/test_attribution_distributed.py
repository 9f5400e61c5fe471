"""LAAT's batch mean under torch.distributed: 2 CPU processes (gloo, 127.0.0.1) against one process.

Each rank sees half of every global batch. With `sync=True` (the default) the attribution's batch mean is
all-reduced, so the penalty equals the single-process penalty on the concatenated batch and (through DDP's
gradient averaging of world_size x each rank's share) the trained weights equal the single-process ones.
With `sync=False` each rank uses its own batch mean, and the weights differ.
Run directly as `python tests/test_attribution_distributed.py RANK PORT OUTDIR` it is one rank of the group.
"""
import socket, subprocess, sys
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F, torch.distributed as dist
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.optimizer import SGD
import fastai.callback.progress  # Learner.no_bar
from llmkd.callback.attribution import laat_penalty, transform_prior

N, B, D, EPOCHS, WORLD = 48, 12, 5, 2, 2   # rows, global batch, features, epochs, processes
FEATS = list('abcde')
SCORES = {'a': 3., 'b': -2., 'c': 0., 'd': 1., 'e': -4.}


def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g)
    y = (x @ torch.tensor([1., -1., .5, 0., -2.]) > 0).float()[:, None]
    return x, y, torch.randperm(N, generator=g)


def rank_rows(perm, rank, world):
    "Rows a rank visits, in order: its slice of each global batch of B (one process: all of them)"
    h = B // world
    return torch.cat([perm[k*B + rank*h: k*B + (rank+1)*h] for k in range(N // B)])


def bce(p, y): return F.binary_cross_entropy_with_logits(p, y)


def model_fn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, 1))


def train(rank=0, world=1, sync=True):
    "Fit an MLP with LAAT over the rank's rows; weights, the recorded penalty, and the functional penalty on the first batch"
    torch.set_num_threads(1)
    x, y, perm = problem()
    rows = rank_rows(perm, rank, world)
    model = model_fn()
    target = transform_prior(torch.tensor(list(SCORES.values())))
    first = rows[:B // world]
    pen_fn = laat_penalty(model, x[first], target, sync=sync)[0].item()   # through the leading-linear shortcut
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    items = list(zip(x[rows], y[rows]))
    dls = DataLoaders(DataLoader(items, bs=B // world, shuffle=False), DataLoader(items[:B], bs=B))
    learn = Learner(dls, net, loss_func=bce, opt_func=SGD, lr=0.5).laat(SCORES, features=FEATS, gamma=10., sync=sync,
                                                                       linear_shortcut=False)
    with learn.no_bar(): learn.fit(EPOCHS)
    names = learn.recorder.metric_names[1:-1]
    return dict(weights=torch.cat([p.detach().flatten() for p in model.parameters()]), pen_fn=torch.tensor(pen_fn),
                attr_loss=torch.tensor([v[names.index('attr_loss')] for v in learn.recorder.values]))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def run_ranks(tmp_path, sync):
    port = free_port()
    procs = [subprocess.Popen([sys.executable, __file__, str(r), str(port), str(tmp_path), str(int(sync))],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    return [torch.load(tmp_path/f'rank{r}.pt') for r in range(WORLD)]


def test_two_processes_match_one(tmp_path):
    r0, r1 = run_ranks(tmp_path, sync=True)
    one = train()
    for k in ('weights', 'pen_fn'): assert torch.equal(r0[k], r1[k]), k   # every rank computes from the same sums
    torch.testing.assert_close(r0['pen_fn'], one['pen_fn'], rtol=1e-5, atol=1e-7)   # the functional penalty
    torch.testing.assert_close(r0['weights'], one['weights'], rtol=1e-5, atol=1e-6)  # the trained weights
    # the recorded attr_loss is the epoch mean of the (global) batch penalties: equal on each rank and to one process
    torch.testing.assert_close(r0['attr_loss'], one['attr_loss'], rtol=1e-5, atol=1e-6)
    init = torch.cat([p.detach().flatten() for p in model_fn().parameters()])
    assert (one['weights'] - init).abs().max() > 1e-2 and (one['attr_loss'] > 0).all()   # not a trivial case


def test_per_rank_means_differ(tmp_path):
    r0, r1 = run_ranks(tmp_path, sync=False)
    one = train()
    assert not torch.allclose(r0['pen_fn'], one['pen_fn'], rtol=1e-3)          # rank 0's own half-batch mean
    assert not torch.allclose(r0['weights'], one['weights'], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r0['weights'], r1['weights'])                      # DDP still keeps the ranks in step


if __name__ == '__main__':
    rank, port, out, sync = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), bool(int(sys.argv[4]))
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=WORLD)
    try: torch.save(train(rank, WORLD, sync), out/f'rank{rank}.pt')
    finally: dist.destroy_process_group()
