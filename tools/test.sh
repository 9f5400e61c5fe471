#!/usr/bin/env bash
# The whole test suite, in order: export and clean checks, README check, notebook tests, docs site, pytest (last).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
fail() { echo "FAILED: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

# The llama.cpp server for the llm-flagged tests starts in the background now, at low priority: on a machine that has
# never built llama-cpp-python it compiles first (about 10 minutes on 2 cores; pip caches the wheel), meanwhile the
# other checks run. Its URL is read after the notebook tests and the docs build.
llama_out=$(mktemp -d)
export LLAMACPP_LOG="$llama_out/server.log"
( nice -n 19 bash tools/llamacpp_server.sh >"$llama_out/url" 2>"$llama_out/log" ) &
llama_job=$!
trap 'kill "$(cat "$LLAMACPP_LOG.pid" 2>/dev/null)" 2>/dev/null' EXIT

step "nbdev-export: the library must be exactly what the notebooks export"
nbdev-export || fail "nbdev-export"
changed=$(git status --porcelain -- llmkd) || fail "git status (run the tests from a git checkout)"
[ -z "$changed" ] || fail "the library differs from the committed one (run nbdev-export and commit):
$changed"

step "nbdev-clean: notebooks must be committed clean"
nbdev-clean || fail "nbdev-clean"
dirty=$(git status --porcelain -- nbs) || fail "git status"
[ -z "$dirty" ] || fail "notebooks are not clean (run nbdev-clean and commit):
$dirty"

step "README.md must be generated from nbs/index.ipynb"
python tools/readme.py --check || fail "README.md differs from nbs/index.ipynb (run: python tools/readme.py)"

step "nbdev-test (notebook cells as tests)"
nbdev-test --n-workers 2 || fail "notebook tests"

step "docs site (offline render of nbs/_quarto.yml) and link check"
python tools/docs.py --check || fail "docs build"

step "llama.cpp server (SmolLM2-135M-Instruct GGUF) for the llm-flagged tests"
wait "$llama_job" || { cat "$llama_out/log" >&2; fail "could not start the llama.cpp server"; }
LLMKD_LLAMACPP_URL=$(cat "$llama_out/url")
export LLMKD_LLAMACPP_URL LLMKD_LLM_TESTS=1
echo "serving at $LLMKD_LLAMACPP_URL"

step "nbdev-test --flags llm: the API notebooks' llm cells against that server"
nbdev-test --flags llm --n-workers 1 --file-re '^(01_teacher|02_priors|04_pseudolabel)\.ipynb$' || fail "llm notebook tests"

step "pytest (llm tests included)"
# Exit 5 (no test collected) fails too: tests/ holds tests, so collecting none means something is broken.
python -m pytest -q tests
