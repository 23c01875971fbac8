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
.venv/bin/python -m pip install -q -e ".[test,optuna]"

# timm, for nas.build_timm_model and the tests against the real timm (tests/test_timm_real.py).
# It is installed without its dependencies: its model code needs torch, torchvision and pyyaml
# only (huggingface_hub and safetensors fetch pretrained weights, which nothing here does),
# and pip resolving timm's torchvision would replace the torch above. torchvision is added
# only when missing, as the release made for this torch (torch 2.N goes with torchvision
# 0.(N+15)). Beside this machine's CPU build of torch, PyPI's torchvision (a CUDA build)
# cannot load its C extension; timm's EfficientNet uses none of it, and tests/timm_import.py
# says how the tests import timm then.
if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('timm') is None)"; then
  TIMM_PKGS="timm==1.0.31"
  if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torchvision') is None)"; then
    TV=$(.venv/bin/python -c "import torch; major, minor = torch.__version__.split('.')[:2]; print(f'0.{int(minor) + 15}.*' if major == '2' else '')")
    [ -n "$TV" ] && TIMM_PKGS="$TIMM_PKGS torchvision==$TV"
  fi
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q --no-deps $TIMM_PKGS
fi

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
