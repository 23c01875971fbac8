#!/usr/bin/env bash
# The whole test suite: the default (fast) tests, then the slow end-to-end ones.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
.venv/bin/python -m pytest -q -p no:cacheprovider
.venv/bin/python -m pytest -q -p no:cacheprovider -m slow --durations=15
