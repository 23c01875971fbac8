#!/usr/bin/env bash
# Try the newest releases of every dependency: install them into a scratch virtual environment
# (not .venv), print which versions differ from constraints.txt, and run the fast test suite
# with them (on this work tree: run it in a clean clone to test the commit alone). With
# --write-lock, and only if the suite passed, constraints.txt is rewritten from that
# environment (review it with git diff, then commit it).
#
#   bash tools/check-latest.sh [--write-lock] [--keep] [--float-torch]
#
# --keep         keep the scratch environment (its path is printed) instead of removing it.
# --float-torch  let torch float too. By default torch stays at the lock's version, which on
#                this kind of machine is the CPU build on local disk: the newest torch from
#                PyPI is a CUDA build of several GB, and torch's releases are taken on purpose
#                (a torch change moves torchvision and the measured numbers), not weekly.
#                A machine's pip configuration may still cap torch (see pip config list).
# The lock is for Linux x86_64 and CPython 3.11 (PYTHON picks the interpreter, as in setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOCK=constraints.txt

WRITE=0 KEEP=0 FLOAT_TORCH=0
for arg in "$@"; do
  case "$arg" in
    --write-lock) WRITE=1 ;;
    --keep) KEEP=1 ;;
    --float-torch) FLOAT_TORCH=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-latest.sh: unknown option '$arg'; use --write-lock, --keep or --float-torch" >&2
       exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/effnas-latest.XXXXXX")
VENV=$SCRATCH/venv
cleanup() {
  if [ "$KEEP" = 1 ]; then echo "kept the scratch environment: $VENV"; else rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT

echo "== a scratch environment with the newest releases: $VENV"
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip setuptools
# Every install below keeps to $TORCH_PIN: torch's pin, or nothing with --float-torch.
TORCH_PIN=$SCRATCH/torch.txt
: > "$TORCH_PIN"
if [ "$FLOAT_TORCH" = 0 ]; then
  TORCH=$(sed -n 's/^torch==//p' "$LOCK" 2>/dev/null)
  if [ -z "$TORCH" ]; then
    echo "check-latest.sh: $LOCK has no torch pin; restore it (git checkout -- $LOCK) or pass --float-torch" >&2
    exit 1
  fi
  echo "torch==$TORCH" > "$TORCH_PIN"
fi
PIP+=(-c "$TORCH_PIN")
"${PIP[@]}" --upgrade torch
# The same parts as tools/setup.sh: the project with its test, optuna and docs extras, then timm
# without its dependencies and the torchvision release made for this torch.
"${PIP[@]}" --upgrade --upgrade-strategy eager -e ".[test,optuna,docs]"
TV=$("$VENV/bin/python" -c "import torch; major, minor = torch.__version__.split('.')[:2]; print(f'0.{int(minor) + 15}.*' if major == '2' else '')")
if [ -z "$TV" ]; then
  echo "check-latest.sh: no torchvision rule for torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'); extend the rule in tools/setup.sh and here" >&2
  exit 1
fi
"${PIP[@]}" --upgrade --no-deps timm "torchvision==$TV"

# The environment as a lock: every installed distribution pinned (pip and setuptools too), the
# project itself left out, and torch's local build label (+cpu) dropped so the pin matches a
# CUDA build of the same release.
NEW=$SCRATCH/constraints.txt
{
  echo "# Every dependency of effnas, pinned: tools/setup.sh installs exactly these (Linux x86_64,"
  echo "# CPython 3.11; torch is the CPU build). Made by: bash tools/check-latest.sh --write-lock"
  "$VENV/bin/python" -m pip freeze --all --exclude-editable | sed -E 's/^(torch(vision)?==[^+]*)\+.*/\1/' \
    | LC_ALL=C sort -f -t= -k1,1
} > "$NEW"

echo "== versions that differ from $LOCK"
"$VENV/bin/python" - "$LOCK" "$NEW" <<'EOF'
import re, sys
def pins(path):
    out = {}
    try:
        lines = open(path).readlines()
    except FileNotFoundError:
        return out
    for line in lines:
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return out
old, new = pins(sys.argv[1]), pins(sys.argv[2])
rows = [(n, old.get(n, "-"), new.get(n, "-")) for n in sorted(old.keys() | new.keys())
        if old.get(n) != new.get(n)]
for name, a, b in rows:
    print(f"  {name:28} {a:>14} -> {b}")
print(f"  {len(rows)} of {len(new)} differ" if rows else "  none: the lock is the newest")
EOF

echo "== the fast test suite with these versions"
status=0
# tests/test_lock.py checks the lock these versions would be written to.
EFFNAS_LOCK=$NEW "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n auto || status=$?
if [ "$status" != 0 ]; then
  echo "check-latest.sh: the fast suite failed with these versions (above; the same tests in .venv tell a new release's break from the work tree's); the lock is unchanged" >&2
  exit "$status"
fi
if [ "$WRITE" = 1 ]; then
  cp "$NEW" "$ROOT/$LOCK"
  echo "wrote $LOCK: review with git diff $LOCK and commit it"
else
  echo "the fast suite passed with the newest releases; bash tools/check-latest.sh --write-lock writes them to $LOCK"
fi
