#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with the project, its test tools and
# the documentation site's (mkdocs), all at the versions in constraints.txt, and the
# Fashion-MNIST files. Safe to run again: it adds what is missing and brings other versions
# to the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Every package is pinned in constraints.txt, so one commit installs one set of packages,
# and a .venv of other versions is brought to it. The lock was made on Linux x86_64 with
# CPython 3.11; bash tools/check-latest.sh tries the newest releases and rewrites it.
LOCK=constraints.txt
PIP=(.venv/bin/python -m pip install -q)
"${PIP[@]}" -c "$LOCK" pip setuptools

# torch: the lock's release, the CPU build on this kind of machine (pip would otherwise fetch
# a several-GB CUDA build). With a GPU, install the torch build for your CUDA first: a CUDA or
# ROCm build of another release than the lock's is kept, and the lock's torch and torchvision
# pins are left out for it.
CONSTRAINTS=$LOCK
if .venv/bin/python -c "import sys, torch; sys.exit(not (torch.version.cuda or torch.version.hip) or torch.__version__.split('+')[0] == sys.argv[1])" \
     "$(sed -n 's/^torch==//p' "$LOCK")" 2>/dev/null; then
  CONSTRAINTS=$(mktemp)
  trap 'rm -f "$CONSTRAINTS"' EXIT
  grep -vE '^(torch|torchvision)==' "$LOCK" > "$CONSTRAINTS"
  echo "keeping this .venv's torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') (a GPU build; $LOCK has $(grep '^torch==' "$LOCK"))"
else
  "${PIP[@]}" -c "$LOCK" torch
fi
"${PIP[@]}" -c "$CONSTRAINTS" -e ".[test,optuna,docs]"

# timm, for nas.build_timm_model and the tests against the real timm (tests/test_timm_real.py).
# It is installed without its dependencies: its model code needs torch, torchvision and pyyaml
# only (huggingface_hub and safetensors fetch pretrained weights, which nothing here does),
# and pip resolving timm's torchvision would replace the torch above. torchvision is the
# release made for this torch (torch 2.N goes with torchvision 0.(N+15)): the lock's beside
# the lock's torch, else added only when missing. Beside this machine's CPU build of torch,
# PyPI's torchvision (a CUDA build) cannot load its C extension; timm's EfficientNet uses none
# of it, and tests/timm_import.py says how the tests import timm then.
TIMM_PKGS="timm==$(sed -n 's/^timm==//p' "$LOCK")"
if [ "$CONSTRAINTS" = "$LOCK" ]; then
  TIMM_PKGS="$TIMM_PKGS $(grep '^torchvision==' "$LOCK")"
elif ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torchvision') is None)"; then
  TV=$(.venv/bin/python -c "import torch; major, minor = torch.__version__.split('.')[:2]; print(f'0.{int(minor) + 15}.*' if major == '2' else '')")
  [ -n "$TV" ] && TIMM_PKGS="$TIMM_PKGS torchvision==$TV"
fi
# shellcheck disable=SC2086
"${PIP[@]}" --no-deps $TIMM_PKGS

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
