#!/usr/bin/env bash
# The whole test suite: the default (fast) tests, then the slow end-to-end ones.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
# The fast tests run on every core (pytest-xdist). The slow ones on two workers, each test
# file on one worker (--dist loadfile: a file's shared runs are made once): they wait on Ray
# starts and processes, so two side by side took 586-617 s where one after the other took
# 747-819 s; a third worker gained next to nothing (624 s; later 760 s against 784 s on two)
# (wall times of the whole slow suite, measured on a 2-core machine).
.venv/bin/python -m pytest -q -p no:cacheprovider -n auto
.venv/bin/python -m pytest -q -p no:cacheprovider -m slow -n 2 --dist loadfile --durations=15
