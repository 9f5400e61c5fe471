"""LAAT and LLKD on the Learners fastai users already have: `tabular_learner` with categoricals, FillMissing and
Normalize; `text_classifier_learner` (a small AWD_LSTM, pretrained=False); a `DataBlock`; plain tensors.
Priors and pseudo-labels come from a teacher served over real HTTP by `llmkd.testing.LLMServer`."""
import copy, json, pickle, random, re, tempfile, warnings
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn, torch.nn.functional as F
from fastai.tabular.all import tabular_learner, TabularDataLoaders, Categorify, FillMissing, Normalize
from fastai.text.all import TextDataLoaders, text_classifier_learner, AWD_LSTM, awd_lstm_clas_config
from fastai.data.block import DataBlock, TransformBlock, CategoryBlock, ColReader, ColSplitter
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner, load_learner
from fastai.metrics import accuracy
from fastai.optimizer import SGD
from fastai.callback.training import GradientAccumulation
from fastai.callback.mixup import MixUp
from fastai.torch_core import set_seed
import fastai.callback.schedule, fastai.callback.progress
from llmkd.core import InputError, LLMKDError
from llmkd.testing import LLMServer
from llmkd.teacher import Teacher
from llmkd.priors import TaskDescription, elicit_attributions
from llmkd.pseudolabel import pseudo_label
from llmkd.callback.attribution import AttributionRegularizer
from llmkd.callback.selection import AllLabelsSelector, ConfidenceSelector

warnings.filterwarnings('ignore', category=UserWarning)
torch.set_num_threads(1)
SEED = int(__import__('os').environ.get('LLMKD_TEST_SEED', 0))


@pytest.fixture(autouse=True)
def seeded():
    "Every test starts from the same python, numpy and torch random state (fastai's DataLoaders draw their shuffles from it)"
    set_seed(SEED)


def teacher(srv, d): return Teacher(model='test-model', base_url=srv.base_url, api_key='sk-test', cache_dir=d, backoff=0.001)


def quiet_fit(learn, *args, how='fit', **kw):
    with learn.no_bar(), learn.no_logging(): getattr(learn, how)(*args, **kw)


def col(learn, name): return [v[list(learn.recorder.metric_names[1:-1]).index(name)] for v in learn.recorder.values]


# ---------------------------------------------------------------------------------------------------- LAAT, tabular
KNOWN = {'smoker_yes': 8, 'smoker_no': -8, 'region_north': 0, 'region_south': 0, 'region_east': 0, 'age': 7, 'bmi': 0}

def expert(body):
    "The teacher: scores per feature listed in the prompt, one answer per requested choice"
    feats = re.findall(r'^\d+\. ([^:]+):', body['messages'][1]['content'], flags=re.M)
    return [json.dumps({'reasoning': 'age and smoking drive sickness', 'scores': {f: KNOWN[f] for f in feats}})] * (body.get('n') or 1)


@pytest.fixture(scope='module')
def tab():
    set_seed(SEED)
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({'smoker': rng.choice(['no', 'yes'], n), 'region': rng.choice(['north', 'south', 'east'], n),
                       'age': rng.normal(50, 10, n), 'bmi': rng.normal(25, 4, n)})
    df.loc[::13, 'bmi'] = np.nan
    df['sick'] = np.where((df.age - 50) / 10 + 1.5 * (df.smoker == 'yes') + rng.normal(0, 1, n) > .7, 'yes', 'no')
    desc = {'smoker': 'smokes', 'region': 'where the patient lives', 'age': 'age in years', 'bmi': 'body-mass index'}
    task = TaskDescription.from_df(df, 'sick', 'Predict whether a patient is sick.', desc)
    with tempfile.TemporaryDirectory() as d, LLMServer(expert) as srv:
        prior = elicit_attributions(task, teacher(srv, d), n_estimates=3, progress=False)
        n_req = len(srv.requests)
    dls = TabularDataLoaders.from_df(df, y_names='sick', cat_names=['smoker', 'region'], cont_names=['age', 'bmi'],
                                     procs=[Categorify, FillMissing, Normalize], bs=64, valid_idx=list(range(320, 400)))
    return dict(df=df, task=task, prior=prior, dls=dls, n_req=n_req)


def test_laat_tabular_learner(tab, tmp_path):
    "The issue's case (a): a prior elicited from the DataFrame on the tabular_learner built from it"
    dls, prior = tab['dls'], tab['prior']
    dls.train.rng = random.Random(SEED)
    assert tab['n_req'] == 1 and 'smoker_yes' in prior.features and dls.cat_names == ['smoker', 'region', 'bmi_na']
    torch.manual_seed(0)
    plain = tabular_learner(dls, metrics=accuracy, path=tmp_path)
    torch.manual_seed(0)
    learn = tabular_learner(dls, metrics=accuracy, path=tmp_path).laat(prior, gamma=30.)
    assert len(learn.validate()) == len(plain.validate()) == 2            # [valid_loss, accuracy] before a fit
    quiet_fit(learn, 5, 1e-2, how='fit_one_cycle')
    cos = col(learn, 'attr_cos')
    assert cos[-1] > cos[0] + 0.2 and cos[-1] > 0.6, cos                 # training moves the attributions to the prior
    assert all(np.isfinite(col(learn, 'attr_loss')))
    assert len(learn.validate()) == 2 and len(learn.metrics) == 1         # ... and after it
    # pickle and deepcopy (fastai 2.8 pickles a whole tabular Learner after a fit, not after lr_find) keep the callback
    for other in (pickle.loads(pickle.dumps(learn)), copy.deepcopy(learn)):
        quiet_fit(other, 1, 1e-3)
        assert np.isfinite(col(other, 'attr_cos')[-1])
    ar = learn.attribution_regularizer
    assert ar.feature_names == ['smoker_no', 'smoker_yes', 'region_east', 'region_north', 'region_south', 'age', 'bmi']
    # predict decodes; get_preds and lr_find run without the penalty
    row, klass, probs = learn.predict(tab['df'].iloc[0])   # (fastai 2.8 on pandas 3 leaves `row` encoded, with or without llmkd)
    decoded = learn.dls.vocab[int(klass)]
    assert decoded in ('no', 'yes') and probs.shape == (2,) and int(klass) == int(probs.argmax())
    assert learn.get_preds()[0].shape == (80, 2)
    learn.lr_find(num_it=5, show_plot=False)
    # export / load_learner keep the callback and the model
    learn.export('laat.pkl')
    back = load_learner(tmp_path/'laat.pkl')
    assert any(isinstance(c, AttributionRegularizer) for c in back.cbs)
    assert back.dls.vocab[int(back.predict(tab['df'].iloc[0])[1])] == decoded


def test_laat_tabular_errors(tab):
    dls = tab['dls']
    # a prior over other features: the error names them and the fix
    bad = {'yes': {'smoker': 1., 'region': 2., 'age': 3., 'bmi': 0.}}
    with pytest.raises(InputError, match=r"missing from the prior: \['region'\]; unknown to the model: \['region'\].*e\.g\. 'smoker_no'"):
        quiet_fit(tabular_learner(dls).laat(bad), 1)
    # NaN prior: named error at once
    with pytest.raises(InputError, match=r"NaN or infinite scores for \['bmi'\]"):
        tabular_learner(dls).laat({'age': 1., 'bmi': float('nan')})
    # NaN data without FillMissing: a named error at the end of the epoch, not silent NaN losses
    df = tab['df']
    raw = TabularDataLoaders.from_df(df, y_names='sick', cat_names=['smoker'], cont_names=['age', 'bmi'],
                                     procs=[Categorify], bs=64, valid_idx=list(range(320, 400)))
    l = tabular_learner(raw).laat({'smoker_yes': 5., 'age': 5., 'bmi': 0.})
    with pytest.raises(InputError, match='training inputs hold NaN'): quiet_fit(l, 1)
    assert len(l.model._forward_pre_hooks) == 0 and len(l.metrics) == 0   # cleaned up before the error


# ---------------------------------------------------------------------------------------------------- LLKD, text
POS, NEG, FILL = ['good', 'great', 'fine', 'nice', 'superb'], ['bad', 'awful', 'poor', 'sad', 'dull'], ['the', 'a', 'movie', 'plot', 'it']

def text_teacher(body):
    "Labels a text by its sentiment words; less sure (and wrong) when they are mixed; verbalised confidence"
    text = body['messages'][-1]['content'].split('Text:\n')[-1]
    p, q = sum(w in POS for w in text.split()), sum(w in NEG for w in text.split())
    label, conf = ('pos' if p > q else 'neg'), 0.95 if min(p, q) == 0 else 0.55
    if min(p, q) > 0: label = 'neg' if label == 'pos' else 'pos'
    return json.dumps({'label': label, 'confidence': conf}) if '"confidence"' in body['messages'][0]['content'] else json.dumps({'label': label})


@pytest.fixture(scope='module')
def text():
    set_seed(SEED)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(160):
        lab = 'pos' if i % 2 else 'neg'
        words = list(rng.choice(POS if lab == 'pos' else NEG, 4)) + list(rng.choice(FILL, 3))
        if i % 5 == 0: words += list(rng.choice(NEG if lab == 'pos' else POS, 1))   # mixed texts
        rng.shuffle(words); rows.append((' '.join(words), lab, i >= 128))
    df = pd.DataFrame(rows, columns=['text', 'gold', 'is_valid'])
    df.index = df.index + 1000
    with tempfile.TemporaryDirectory() as d, LLMServer(text_teacher, logprobs=False) as srv:
        labels = pseudo_label(df.text[~df.is_valid], ['neg', 'pos'], teacher(srv, d), n_samples=1, progress=False)
        n_req = len(srv.requests)
    df['label'] = df.gold
    df.loc[~df.is_valid, 'label'] = labels.label.values
    return dict(df=df, labels=labels, n_req=n_req)


def small_awd(dls, path):
    cfg = dict(awd_lstm_clas_config, emb_sz=16, n_hid=32, n_layers=1)
    return text_classifier_learner(dls, AWD_LSTM, config=cfg, pretrained=False, metrics=accuracy, path=path)


class Spy(AllLabelsSelector):
    "Records the pool index and pseudo-label of every training sample"
    def select(self, c, u, y, idx):
        self.seen = getattr(self, 'seen', []) + [(idx.cpu(), y.cpu())]
        return super().select(c, u, y, idx)


def check_index(spy, labels_in_items_order, vocab=None, once=True):
    "Every batch's pool index points at the training item whose label the batch carries"
    idx, y = (torch.cat(t) for t in zip(*spy.seen))
    if once: assert sorted(idx.tolist()) == list(range(len(labels_in_items_order)))   # one epoch visits every item once
    assert [vocab[int(k)] if vocab else int(k) for k in y] == [labels_in_items_order[int(i)] for i in idx]


def test_llkd_text_classifier(text, tmp_path):
    "The issue's case (b): pseudo-labels from a teacher, TextDataLoaders, text_classifier_learner"
    df, labels = text['df'], text['labels']
    assert text['n_req'] == 1 + 128 and set(labels.confidence.round(2)) == {0.55, 0.95}   # probe + one per text
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='is_valid', bs=16, seq_len=16)
    torch.manual_seed(0)
    spy = small_awd(dls, tmp_path)
    spy.add_cb(Spy(labels.confidence.values))
    quiet_fit(spy, 1, 1e-2)
    check_index(spy.selector, list(dls.train.items.label), dls.vocab[1])
    torch.manual_seed(0)
    plain = small_awd(dls, tmp_path)
    learn = small_awd(dls, tmp_path).llkd(labels.confidence.values, warmup=0.1)
    assert len(learn.validate()) == len(plain.validate()) == 2
    quiet_fit(learn, 3, 1e-2, how='fit_one_cycle')
    sel = learn.selector
    assert 0 < sel.used.sum() < len(labels) and sel.warmup_steps == round(0.1 * 3 * len(dls.train))
    assert (sel.conf[sel.used] > 0.9).float().mean() > 0.5          # confident samples dominate what was used
    assert len(learn.validate()) == 2 and learn.dls.vocab[1] == ['neg', 'pos']
    assert learn.predict('good great fine the movie')[0] in ('neg', 'pos')
    learn.export('llkd.pkl')
    back = load_learner(tmp_path/'llkd.pkl')
    assert back.predict('good great fine the movie')[0] == learn.predict('good great fine the movie')[0]
    again = pickle.loads(pickle.dumps(learn))   # (deepcopy: fastai's AWD_LSTM holds non-leaf dropped-out weights, which torch refuses to deepcopy)
    assert isinstance(again.selector, ConfidenceSelector) and again.selector.n_steps == sel.n_steps
    # fine_tune: the warm-up is a share of both phases
    ft = small_awd(dls, tmp_path).llkd(pd.Series(df.index.map(lambda i: 0.9), index=df.index), warmup=0.5)
    quiet_fit(ft, 1, how='fine_tune', freeze_epochs=1)
    assert ft.selector.warmup_steps == round(0.5 * 2 * len(dls.train))


def test_llkd_conf_checks(text, tmp_path):
    df, labels = text['df'], text['labels']
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='is_valid', bs=16, seq_len=16)
    conf = labels.confidence.values.copy(); conf[3] = np.nan
    with pytest.raises(InputError, match=r'positions \(3,\)'): small_awd(dls, tmp_path).llkd(conf)
    l = small_awd(dls, tmp_path).llkd(labels.confidence.values[:-1])
    with pytest.raises(InputError, match='127 confidences but the training set has 128 items'): quiet_fit(l, 1)
    s = pd.Series(0.9, index=df.index[1:])   # keyed by the DataFrame's index, one training row missing
    with pytest.raises(InputError, match=r'no confidence for 1 training rows \(index \[1000\]\)'): quiet_fit(small_awd(dls, tmp_path).llkd(s), 1)


# ---------------------------------------------------------------------------------------------------- DataBlock, tabular LLKD
def test_llkd_datablock_and_tabular(tab):
    df = tab['df'].assign(is_valid=lambda d: d.index >= 320)
    conf = pd.Series(np.random.default_rng(0).uniform(0.3, 1, len(df)), index=df.index)   # keyed by the DataFrame's index
    block = DataBlock(blocks=(TransformBlock(), CategoryBlock), get_x=lambda r: torch.tensor([r.age / 50, r.smoker == 'yes'], dtype=torch.float32),
                      get_y=ColReader('sick'), splitter=ColSplitter('is_valid'))
    dls = block.dataloaders(df, bs=32)
    learn = Learner(dls, nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)), loss_func=nn.CrossEntropyLoss())
    learn.add_cb(Spy(conf))
    quiet_fit(learn, 1, 1e-2)
    check_index(learn.selector, list(dls.train.items.sick), dls.vocab)
    again = copy.deepcopy(learn); quiet_fit(again.llkd(conf), 1, 1e-2)
    assert again.selector.n_steps == len(dls.train)
    sel_conf = torch.cat([i for i, _ in learn.selector.seen])
    assert torch.equal(learn.selector.conf.cpu(), torch.tensor(conf.loc[dls.train.items.index].values, dtype=torch.float32))
    tl = tabular_learner(tab['dls'])
    tl.add_cb(Spy(pd.Series(0.8, index=tab['df'].index)))
    quiet_fit(tl, 1, 1e-2)
    # tabular_learner's training DataLoader samples with replacement (TabWeightedDL); its items hold encoded labels
    check_index(tl.selector, list(tab['dls'].train.items.sick), once=False)


# ---------------------------------------------------------------------------------------------------- fastai machinery
def tensor_data(n=64, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, (x @ torch.tensor([1., -2., 0., .5]) > 0).long()


def test_gradient_accumulation_equals_big_batch():
    "GradientAccumulation(32) over 4 batches of 8 gives the update of one batch of 32 (penalty scaled with the loss)"
    x, y = tensor_data(32)
    prior = {'a': 3., 'b': -2., 'c': 0., 'd': 1.}
    def one_step(bs, cbs):
        torch.manual_seed(0)
        m = nn.Linear(4, 2)
        l = Learner(DataLoaders(DataLoader(list(zip(x, y)), bs=bs), DataLoader(list(zip(x, y)), bs=32)), m,
                    loss_func=nn.CrossEntropyLoss(), opt_func=SGD, lr=0.1, cbs=cbs).laat(prior, features=list('abcd'), gamma=50.)
        quiet_fit(l, 1)
        return torch.cat([p.detach().flatten() for p in m.parameters()])
    torch.manual_seed(0); w0 = torch.cat([p.detach().flatten() for p in nn.Linear(4, 2).parameters()])
    big, acc = one_step(32, []), one_step(8, [GradientAccumulation(32)])
    torch.testing.assert_close(acc, big, rtol=1e-5, atol=1e-6)
    assert (big - w0).abs().max() > 1e-2
    # the selector's loss is scaled by GradientAccumulation the same way
    def sel_step(bs, cbs):
        torch.manual_seed(0)
        m = nn.Linear(4, 2)
        l = Learner(DataLoaders(DataLoader(list(zip(x, y)), bs=bs), DataLoader(list(zip(x, y)), bs=32)), m,
                    loss_func=nn.CrossEntropyLoss(), opt_func=SGD, lr=0.1, cbs=cbs).llkd(torch.full((32,), .9), strategy='all')
        quiet_fit(l, 1)
        return torch.cat([p.detach().flatten() for p in m.parameters()])
    torch.testing.assert_close(sel_step(8, [GradientAccumulation(32)]), sel_step(32, []), rtol=1e-5, atol=1e-6)


def test_mixup_and_validate_on_tensors():
    x, y = tensor_data(128)
    dls = DataLoaders(DataLoader(list(zip(x[:96], y[:96])), bs=32, shuffle=True), DataLoader(list(zip(x[96:], y[96:])), bs=32))
    from fastai.losses import CrossEntropyLossFlat
    learn = Learner(dls, nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), loss_func=CrossEntropyLossFlat(),
                    cbs=[MixUp()]).laat({'a': 3., 'b': -2., 'c': 0., 'd': 1.}, features=list('abcd'), gamma=5.)
    quiet_fit(learn, 3, 1e-2)
    cos = col(learn, 'attr_cos')
    assert all(np.isfinite(col(learn, 'attr_loss'))) and cos[-1] > cos[0]
    assert len(learn.validate()) == 1
    with pytest.raises(InputError, match="prior names its features.*pass `features=`"):
        quiet_fit(Learner(dls, nn.Linear(4, 2), loss_func=CrossEntropyLossFlat()).laat({'a': 1., 'b': 2., 'c': 0., 'd': 1.}), 1)


# ---------------------------------------------------------------------------------------------------- README
def test_readme_check_runs_the_code():
    "tools/readme.py --check runs the README's Python blocks: the old snippet (no `import torch`) fails there"
    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location('readme', pathlib.Path(__file__).parent.parent/'tools'/'readme.py')
    readme = importlib.util.module_from_spec(spec); spec.loader.exec_module(readme)
    text = 'intro\n\n```python\nimport math\n```\n\n```\noutput\n```\n\n```python\nx = torch.rand(64, 3)\n```\n'
    assert readme.python_blocks(text) == 'import math\n\nx = torch.rand(64, 3)'
    res = readme.run_blocks(text)
    assert res.returncode != 0 and "NameError: name 'torch' is not defined" in res.stderr
    assert readme.run_blocks('```python\nimport math\nassert math.pi > 3\n```').returncode == 0
