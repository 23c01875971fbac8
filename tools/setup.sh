#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with the project and its test
# tools, and the Fashion-MNIST files. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# A CPU build of torch, pinned so pip does not fetch a several-GB CUDA build; with a GPU,
# install the torch build for your CUDA first and this line leaves it alone.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"

FMNIST=/usr/share/datasets/fashion-mnist
if [ -z "${NAS_DATA_DIR:-}" ] && [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', or download" \
         "the four IDX files from the data set's authors (Zalando Research's fashion-mnist" \
         "repository) and set NAS_DATA_DIR to their folder." >&2
    exit 1
  fi
fi
echo "setup done: .venv ready, Fashion-MNIST at ${NAS_DATA_DIR:-$FMNIST}"
