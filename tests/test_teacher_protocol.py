"One protocol-level check (`llmkd.core.TeacherProtocol`) run over every kind of teacher llmkd ships."
import json
from contextlib import ExitStack

import numpy as np
import pandas as pd
import pytest

from llmkd.core import TeacherProtocol, Usage, InputError, count_tokens
from llmkd.teacher import Teacher
from llmkd.testing import LLMServer
from llmkd.batch import BatchServer, BatchTeacher
from llmkd.pseudolabel import ProbaTeacher, EmbeddingTeacher
from llmkd.elad import ArithProblem, RevisionRequest, OfflineArithTeacher, LLMTeacher, TeacherReply

TEXTS = ['United won the cup final 2-0', 'Shares fell 3% after the results', 'A new phone with a faster chip']
TOPICS = ['sport', 'business', 'tech']
PROB = ArithProblem('Ana has 5 apples and gets 3 more. How many apples does Ana have?', ['5 + 3 = 8'], [8])
REQS = [RevisionRequest(0, PROB.question, ['5 + 3 = 9'], '9', PROB), RevisionRequest(7, PROB.question, ['5 + 3 = 8'], '8', PROB)]


def _revision(body):
    "A test LLM teacher for ELAD: the student's first step is wrong when its equation is false."
    wrong = '= 9' in body['messages'][-1]['content']
    return json.dumps({'first_wrong_step': 1 if wrong else None, 'corrected_steps': ['5 + 3 = 8'] if wrong else [], 'final_answer': '8'})


def _llm(stack, tmp_path):
    srv = stack.enter_context(LLMServer())   # echoes the prompt
    t = Teacher('m', srv.base_url, cache_dir=tmp_path)
    n = sum(count_tokens(s) for s in ['one two', 'three, four'])   # hand count: one two | three , four -> 2 + 3
    assert n == 5
    return dict(teacher=t, items=['one two', 'three, four'], bad=['fine', None], kw=dict(progress=False),
                same=lambda item, a: a.text == item, sent=lambda: len(srv.requests),
                usage=Usage(requests=2, prompt_tokens=5, completion_tokens=5, cache_misses=2))


def _batch(stack, tmp_path):
    srv = stack.enter_context(BatchServer(lambda b: 'ok'))
    t = BatchTeacher(Teacher('m', srv.base_url, cache_dir=tmp_path), poll_interval=0.01)
    return dict(teacher=t, items=['a b', 'c'], bad=[None], kw=dict(progress=False),
                same=lambda item, a: a.text == 'ok', sent=lambda: len(srv.requests) + len(srv.batch_rows),
                # two batch requests (prompt 2 + 1 tokens, 1 completion token each), then the ordinary map reads both from the cache
                usage=Usage(requests=2, prompt_tokens=3, completion_tokens=2, cache_hits=2))


def _sklearn(stack, tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, TOPICS)
    return dict(teacher=ProbaTeacher.from_sklearn(pipe), items=TEXTS[::-1], bad=['fine', float('nan')], kw={},
                same=lambda item, p: np.allclose(p, pipe.predict_proba([item])[0]), sent=lambda: 0, usage=Usage(requests=3))


def _fastai(stack, tmp_path):
    from fastai.tabular.all import TabularDataLoaders, tabular_learner
    feats = lambda ts: pd.DataFrame({'n_words': [float(len(t.split())) for t in ts], 'n_digits': [float(sum(c.isdigit() for c in t)) for t in ts]})
    dls = TabularDataLoaders.from_df(feats(TEXTS*4).assign(topic=TOPICS*4), cont_names=['n_words', 'n_digits'], y_names='topic', bs=4,
                                     valid_pct=0.25, seed=0)
    learn = tabular_learner(dls, layers=[4])
    def ref(item):
        with learn.no_bar(): return learn.get_preds(dl=dls.test_dl(feats([item])))[0][0].numpy()
    return dict(teacher=ProbaTeacher.from_learner(learn, featurize=feats), items=TEXTS, bad=[''], kw={},
                same=lambda item, p: np.allclose(p, ref(item), atol=1e-6), sent=lambda: 0, usage=Usage(requests=3))


def _embedding(stack, tmp_path):
    t = EmbeddingTeacher({'sport': 'Sport news: football, matches', 'business': 'Business news: companies, shares',
                          'tech': 'Technology news: phones, computers'}, cache=False)
    return dict(teacher=t, items=TEXTS, bad=[None], kw={},
                same=lambda item, p: t.classes[int(np.argmax(p))] == TOPICS[TEXTS.index(item)], sent=lambda: 0, usage=Usage(requests=3))


def _offline_elad(stack, tmp_path):
    t = OfflineArithTeacher()
    def same(req, rep): return isinstance(rep, TeacherReply) and rep.idx == req.idx and rep.revision.final_answer == '8'
    from llmkd.elad import revision_messages
    pt = sum(count_tokens(m['content']) for r in REQS for m in revision_messages(r))
    ct = count_tokens('{"first_wrong_step":1,"corrected_steps":["5 + 3 = 8"],"final_answer":"8"}') + \
         count_tokens('{"first_wrong_step":null,"corrected_steps":[],"final_answer":"8"}')
    return dict(teacher=t, items=REQS, bad=['not a request'], kw={}, same=same, sent=lambda: 0,
                usage=Usage(requests=2, prompt_tokens=pt, completion_tokens=ct))


def _llm_elad(stack, tmp_path):
    srv = stack.enter_context(LLMServer(_revision))
    t = LLMTeacher(Teacher('m', srv.base_url, cache_dir=tmp_path), max_tokens=64)
    def same(req, rep): return rep.idx == req.idx and rep.revision.first_wrong_step == (1 if req.answer == '9' else None)
    def usage():
        pt = sum(count_tokens(q['messages']) for q in srv.requests)
        return Usage(requests=len(srv.requests), prompt_tokens=pt, completion_tokens=sum(count_tokens(_revision(q)) for q in srv.requests),
                     cache_misses=len(srv.requests))
    return dict(teacher=t, items=REQS, bad=[REQS[0], None], kw={}, same=same, sent=lambda: len(srv.requests), usage=usage)


KINDS = dict(chat=_llm, batch=_batch, sklearn=_sklearn, fastai=_fastai, embedding=_embedding, offline_elad=_offline_elad, llm_elad=_llm_elad)


@pytest.mark.parametrize('kind', list(KINDS))
def test_teacher_protocol(kind, tmp_path):
    "Every teacher: is a `TeacherProtocol`; `teach` answers each item in input order; `usage` counts what was paid; bad input is refused before paying."
    with ExitStack() as stack:
        k = KINDS[kind](stack, tmp_path)
        t = k['teacher']
        assert isinstance(t, TeacherProtocol)
        t.reset_usage(); assert t.usage == Usage()
        with pytest.raises(InputError): t.teach(k['bad'], **k['kw'])
        assert k['sent']() == 0 and t.usage == Usage()               # refused before anything was sent or counted
        out = t.teach(k['items'], **k['kw'])
        assert len(out) == len(k['items'])
        assert all(k['same'](item, a) for item, a in zip(k['items'], out))
        want = k['usage']() if callable(k['usage']) else k['usage']
        assert t.usage == want, (t.usage, want)
        if kind in ('chat', 'llm_elad'): assert k['sent']() == want.requests   # the server saw what usage says
        snapshot = t.usage; snapshot.requests += 100
        assert t.usage == want                                       # `usage` is a copy
        t.reset_usage(); assert t.usage == Usage()
