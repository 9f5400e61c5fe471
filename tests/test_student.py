"""The transformer student (llmkd.student) beyond the notebook's examples: padding-aware pooling against
sentence-transformers, CLS pooling, length bucketing, LLKD's baselines on it, and CUDA + mixed precision when a GPU is there."""
import numpy as np, pytest, torch, torch.nn.functional as F
from fastai.torch_core import set_seed
import fastai.callback.fp16  # Learner.to_fp16
from llmkd.pseudolabel import bbc_news, load_sentence_model
from llmkd.student import transformer_classifier, transformer_learner, text_dls
from llmkd.callback.selection import SampleSelector
import llmkd.callback.selection  # Learner.llkd

torch.set_num_threads(1)
SHORT = ['Shares rose.', 'The match ended in a draw after extra time.', 'Profits fell sharply this quarter at the bank.']

@pytest.fixture(scope='module')
def bbc():
    df = bbc_news()
    df = df[df.label.isin(['business', 'sport'])].groupby('label').head(24).sample(frac=1, random_state=0)
    return df.text.tolist(), df.label.tolist()

@pytest.fixture(scope='module')
def model(): return transformer_classifier(2, max_len=128).eval()

def test_mean_pool_ignores_padding(model, bbc):
    "Short and long texts in one padded batch: each pooled row equals sentence-transformers' embedding of the text alone"
    texts = SHORT + bbc[0][:2]
    ids, mask = model.tokenize(texts)
    assert (mask == 0).any()  # the short texts are padded
    with torch.no_grad(): emb = F.normalize(model.embed(ids, mask), dim=1)
    st = load_sentence_model(); st.max_seq_length = 128
    ref = torch.stack([torch.as_tensor(st.encode([t], convert_to_numpy=True)[0]) for t in texts])
    torch.testing.assert_close(emb, ref, atol=1e-4, rtol=1e-4)

def test_cls_pool_is_first_token(model):
    st = load_sentence_model(); st.max_seq_length = 128
    tok_emb = st.encode(SHORT[:1], output_value='token_embeddings')[0]
    m = transformer_classifier(2, max_len=128, pool='cls').eval()
    with torch.no_grad(): e = m.embed(*m.tokenize(SHORT[:1]))[0]
    torch.testing.assert_close(e, tok_emb[0].to(e), atol=1e-4, rtol=1e-4)

def test_bucketing_pads_less_and_keeps_partial_batch_last(model, bbc):
    texts = [t[:n] for t, n in zip(bbc[0] * 2, np.random.default_rng(0).integers(20, 600, 2 * len(bbc[0])))]
    labels = bbc[1] * 2
    dls = text_dls(texts, labels, texts[:4], labels[:4], model.tok, max_len=128, bs=10, seed=0)
    idxs = dls.train.get_idxs()
    assert sorted(idxs) == list(range(len(texts)))
    pad = lambda order: sum(max(len(model.tok(texts[i])['input_ids'][:128]) for i in order[s:s+10]) * len(order[s:s+10]) for s in range(0, len(order), 10))
    rnd = list(np.random.default_rng(1).permutation(len(texts)))
    assert pad(idxs) < 0.9 * pad(rnd), (pad(idxs), pad(rnd))
    assert len(list(dls.train)[-1][0]) == len(texts) % 10  # the partial batch is the last one: batches stay chunks of get_idxs

def test_fixed_threshold_uses_exactly_the_confident_samples(bbc):
    "FixedThresholdSelector on the transformer: the pool share used is the share with conf >= threshold (hand-computed)"
    texts, labels = bbc
    conf = np.random.default_rng(0).uniform(0.5, 1.0, 32)
    for strategy, kw, expect in [('fixed', dict(threshold=0.8), float((conf >= 0.8).mean())), ('all', {}, 1.0)]:
        set_seed(0, reproducible=True)
        learn = transformer_learner(texts[:32], labels[:32], texts[32:], labels[32:], max_len=32, bs=8, seed=0)
        learn.llkd(conf, strategy, **kw)
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
        sel = next(cb for cb in learn.cbs if isinstance(cb, SampleSelector))
        assert float(sel.used.float().mean()) == pytest.approx(expect)
        if strategy == 'fixed': assert sel.used.cpu().numpy().tolist() == (conf >= 0.8).tolist()

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_cuda_fp16_llkd(bbc):
    texts, labels = bbc
    learn = transformer_learner(texts[:32], labels[:32], texts[32:], labels[32:], max_len=64, bs=8, seed=0, device='cuda').to_fp16()
    learn.unfreeze(); learn.llkd(np.linspace(0.3, 1, 32), warmup=0.0)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2, slice(5e-5, 1e-3))
    assert next(learn.model.parameters()).device.type == 'cuda'
    assert learn.selector.conf.device.type == 'cuda' and learn.selector.used.any()
    preds = learn.get_preds()[0]
    assert preds.shape == (len(texts) - 32, 2) and torch.isfinite(preds).all()
