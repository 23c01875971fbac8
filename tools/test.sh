#!/usr/bin/env bash
# The whole test suite: the default (fast) tests, then the slow end-to-end ones.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
# The fast tests run on every core (pytest-xdist); the slow ones one at a time: each keeps
# the cores busy on its own and some time their kills (docs/benchmarks.md).
.venv/bin/python -m pytest -q -p no:cacheprovider -n auto
.venv/bin/python -m pytest -q -p no:cacheprovider -m slow --durations=15
