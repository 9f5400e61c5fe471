"""Shared pytest setup for llmkd: the `llm` marker (tests that need a real LLM endpoint) and a clean environment.

Pointing the `llm` tests at a server: set LLMKD_LLAMACPP_URL to its base URL (default http://127.0.0.1:8080/v1), e.g.
    export LLMKD_LLAMACPP_URL=$(tools/llamacpp_server.sh) && .venv/bin/python -m pytest -m llm tests
That is the one setting the tests read; LLMKD_MODEL, OPENAI_BASE_URL and OPENAI_API_KEY from the shell are removed for
every test (a test that needs them sets them itself), so results do not depend on what the shell exports."""
import os, urllib.request
import pytest


def llamacpp_url():
    "Base URL of a reachable OpenAI-compatible llama.cpp server (env LLMKD_LLAMACPP_URL, default 127.0.0.1:8080), or None"
    url = os.environ.get('LLMKD_LLAMACPP_URL', 'http://127.0.0.1:8080/v1').rstrip('/')
    try:
        with urllib.request.urlopen(url + '/models', timeout=1): return url
    except Exception: return None


def pytest_configure(config):
    config.addinivalue_line('markers', 'llm: needs a real LLM endpoint; runs when LLMKD_LLM_TESTS=1 or a llama.cpp server is reachable')


def pytest_collection_modifyitems(config, items):
    llm_items = [i for i in items if 'llm' in i.keywords]
    if not llm_items or os.environ.get('LLMKD_LLM_TESTS') == '1' or llamacpp_url(): return
    skip = pytest.mark.skip(reason='needs a real LLM endpoint: start a llama.cpp server (see nbs/01_teacher.ipynb) '
                                   'or set LLMKD_LLM_TESTS=1 / LLMKD_LLAMACPP_URL')
    for item in llm_items: item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_llm_env(monkeypatch):
    "Every test starts without the shell's endpoint settings (LLMKD_MODEL, OPENAI_BASE_URL, OPENAI_API_KEY)"
    for k in ('LLMKD_MODEL', 'OPENAI_BASE_URL', 'OPENAI_API_KEY'): monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope='session')
def llamacpp():
    "Base URL of the llama.cpp server for `llm` tests (fails clearly when LLMKD_LLM_TESTS=1 but none is reachable)"
    url = llamacpp_url()
    if url is None: pytest.fail('no llama.cpp server reachable at LLMKD_LLAMACPP_URL or http://127.0.0.1:8080/v1 (see nbs/01_teacher.ipynb)')
    return url
