"""Every script under bench/ parses on the interpreter the project supports (a benchmark is
run rarely, so a syntax error there would otherwise surface only when someone measures)."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


def test_there_are_benchmarks():
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_compiles(script: Path):
    compile(script.read_text(), str(script), "exec")
