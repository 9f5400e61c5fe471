"""Seeded random fuzzing of the teacher-layer entry points (Teacher, TaskDescription, AttributionPrior, elicit_attributions)
with malformed inputs and malformed LLM answers over real HTTP: only llmkd's named errors or correct results may come back,
and bad input is refused before the server sees a request."""
import json, math, random

import numpy as np, pandas as pd
import pytest
from pydantic import BaseModel

from llmkd.core import LLMKDError, InputError
from llmkd.testing import LLMServer
from llmkd.teacher import Teacher, Answer
from llmkd.priors import TaskDescription, AttributionPrior, elicit_attributions, elicit_dry_run, answer_schema

WEIRD = [None, float('nan'), float('inf'), -float('inf'), True, False, '', ' ', 'x', 0, -1, 1, 2.5, 10**12, -0.0, [], {}, [None],
         ['a', 'a'], {'role': 'user'}, [{'role': 'user', 'content': None}], [{'role': 'user', 'content': 'ok'}], b'bytes', (1, 2),
         np.nan, np.int64(3), np.float32('nan'), np.bool_(True), pd.NA, 'NaN', '1e400']


class Label(BaseModel):
    label: str
    confidence: float


HASHABLE = [w for w in WEIRD if getattr(type(w), '__hash__', None) is not None and w is not pd.NA]


def pick(rng, good, p_good=0.5, pool=WEIRD):
    return good if rng.random() < p_good else rng.choice(pool)


def checked(call, srv):
    "Run `call`: a result, or an llmkd error; bad input must not have reached the server"
    before = len(srv.requests)
    try: return call()
    except InputError:
        assert len(srv.requests) == before, 'a request was paid before the input was refused'
        return None
    except LLMKDError: return None


def test_fuzz_teacher_inputs(tmp_path):
    rng = random.Random(0)
    with LLMServer(lambda b: '{"label": "a", "confidence": 0.5}') as srv:
        for trial in range(300):
            kw = {k: pick(rng, v, 0.7) for k, v in dict(timeout=5., max_retries=0, concurrency=2, backoff=0.001).items()}
            t = checked(lambda: Teacher('m', srv.base_url, 'sk-x', cache_dir=tmp_path, **kw), srv)
            if t is None: continue
            akw = {k: pick(rng, v, 0.6) for k, v in dict(n=1, temperature=0.0, max_tokens=20, max_reasks=1, schema=Label).items()}
            msg = pick(rng, f'question {trial}', 0.6)
            how = rng.choice(['ask', 'map', 'dry_run'])
            if how == 'ask': r = checked(lambda: t.ask(msg, **akw), srv)
            elif how == 'map': r = checked(lambda: t.map([f'q{trial}', msg], progress=False, **akw), srv)
            else: r = checked(lambda: t.dry_run([msg], **akw), srv)
            for a in (r if isinstance(r, list) else [r] if isinstance(r, Answer) else []):
                if akw.get('schema') is Label: assert a.parsed == Label(label='a', confidence=0.5)


def garbage(rng, body):
    "A malformed (or sometimes valid) answer for the prompt in `body`"
    feats = [l.split(':')[0].split('. ', 1)[1] for l in body['messages'][-1]['content'].splitlines() if l[:1].isdigit() and '. ' in l]
    vals = [True, None, 'high', 11, -11, 3.5, float('nan'), 1e400, [1], {'x': 1}, 2, -3, 0, 10]
    sc = {f: rng.choice(vals) if rng.random() < 0.3 else rng.randint(-10, 10) for f in feats}
    if rng.random() < 0.2: sc.pop(rng.choice(list(sc)), None) if sc else None
    if rng.random() < 0.1: sc['not_a_feature'] = 1
    obj = {'reasoning': rng.choice(['r', None, 5]), 'scores': sc if rng.random() < 0.7 else [{'feature': f, 'score': s} for f, s in sc.items()]}
    text = json.dumps(obj, allow_nan=True)
    return rng.choice([text, text, text, text[:len(text)//2], 'I cannot answer that.', '', 'null', '[]', f'```json\n{text}\n```'])


@pytest.mark.parametrize('seed', range(3))
def test_fuzz_malformed_llm_answers_through_elicit(tmp_path, seed):
    rng = random.Random(seed)
    task = TaskDescription('Predict y.', {'a': 'feature a', 'b': 'feature b', 'c': 'feature c'}, ['no', 'yes'])
    with LLMServer(lambda b: [garbage(rng, b) for _ in range(b.get('n') or 1)]) as srv:
        for trial in range(12):
            for _ in range(rng.randint(0, 2)):
                srv.inject(rng.choice(['malformed', 'disconnect', 'server_error', 'rate_limit', 'no_logprobs']), retry_after=0)
            t = Teacher('m', srv.base_url, 'sk-x', cache_dir=tmp_path/str(trial), max_retries=2, backoff=0.001, timeout=5)
            n = rng.randint(1, 4)
            try: p = elicit_attributions(task, t, n_estimates=n, max_reasks=rng.randint(0, 2), progress=False)
            except LLMKDError: continue
            assert p.features == ['a', 'b', 'c'] and p.estimates.shape == (n, 3, 1)
            assert np.isfinite(p.estimates).all() and (np.abs(p.estimates) <= 10).all()
            counts = p.provenance['estimates_per_feature']['yes']
            assert all(1 <= counts[f] <= n for f in 'abc')


def test_fuzz_task_and_prior_inputs():
    rng = random.Random(1)
    with LLMServer() as srv:
        t = Teacher('m', srv.base_url, 'sk-x', cache=False, max_retries=0)
        for trial in range(400):
            feats = {pick(rng, 'a', 0.8, HASHABLE): pick(rng, 'A', 0.8), pick(rng, 'b', 0.8, HASHABLE): pick(rng, 'B', 0.8)}
            classes = [pick(rng, '0', 0.8), pick(rng, '1', 0.8)] + ([pick(rng, '2')] if rng.random() < 0.2 else [])
            task = checked(lambda: TaskDescription(pick(rng, 'Predict y.', 0.8), feats, classes), srv)
            if task is not None:
                checked(lambda: elicit_dry_run(task, t, n_estimates=pick(rng, 2, 0.7)), srv)
                checked(lambda: elicit_attributions(task, t, n_estimates=pick(rng, 1, 0.5), classes=pick(rng, None, 0.7),
                                                    max_tokens=pick(rng, 5, 0.6), progress=False) if rng.random() < 0.3 else None, srv)
            df = pd.DataFrame({'x': [pick(rng, 1.0, 0.8) for _ in range(4)], 'c': [pick(rng, 'u', 0.8) for _ in range(4)],
                               'y': [pick(rng, v, 0.9) for v in ('p', 'q', 'p', 'q')]})
            def from_df():
                td = TaskDescription.from_df(df, 'y', 'Predict y.', pick(rng, {'x': 'X', 'c': 'C'}, 0.7), cat_names=pick(rng, ['c'], 0.8))
                X = td.encode(df)
                assert list(X.columns) == td.feature_names and np.isfinite(X.to_numpy()).all()
            checked(from_df, srv)
            est = [[pick(rng, 1.0, 0.85)], [pick(rng, -2.0, 0.85)]]
            p = checked(lambda: AttributionPrior([pick(rng, 'a', 0.9), pick(rng, 'b', 0.9)], [pick(rng, 'c', 0.9)], est), srv)
            if p is not None: assert np.isfinite(p.estimates).all()
            q = checked(lambda: AttributionPrior.from_dict({pick(rng, 'c', 0.9, HASHABLE): {'a': pick(rng, 3, 0.8), 'b': pick(rng, -10, 0.8)}}), srv)
            if q is not None: assert np.isfinite(q.estimates).all() and (np.abs(q.estimates) <= 10).all()
        assert len(srv.requests) == 0 or all(r['model'] == 'm' for r in srv.requests)
