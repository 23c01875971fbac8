"""The documented commands work: every code block of the README and the docs pages that is
marked runnable runs as it is written, and must exit 0.

A block is marked by an HTML comment on the line before its fence (invisible on GitHub and
on the site)::

    <!-- runnable -->          run in the fast suite (seconds)
    <!-- runnable: slow -->    run with the slow tests (pytest -m slow)

``bash`` blocks run in ``bash -e -o pipefail`` in a fresh folder that holds ``.venv``, a link
to the environment running the tests, so ``.venv/bin/effnas ...`` is the installed command
and the run folders a block writes go to that folder. ``python`` blocks run as a script in
the same kind of folder. Nothing is shortened: a block too slow for the test suite is left
unmarked (the README's 12-minute search and its grid; docs/python.md's example, which trains
a family member for minutes), and the README's smoke search runs as written in the slow
suite, on the installed Fashion-MNIST.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARK = re.compile(r"^<!--\s*runnable(?::\s*(?P<slow>slow))?\s*-->\s*\n"
                  r"```(?P<lang>[a-z]+)[^\n]*\n(?P<code>.*?)^```", re.M | re.S)
FMNIST = Path(os.environ.get("NAS_DATA_DIR") or "/usr/share/datasets/fashion-mnist")


def blocks() -> list:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in MARK.finditer(text):
            line = text.count("\n", 0, m.start("code")) + 1
            name = f"{page.relative_to(ROOT)}:{line}"
            marks = [pytest.mark.slow] if m["slow"] else []
            out.append(pytest.param(m["lang"], m["code"], id=name, marks=marks))
    return out


def test_the_readme_marks_its_runnable_blocks() -> None:
    readme = [p for p in blocks() if p.id.startswith("README.md")]
    assert {p.values[0] for p in readme} == {"bash", "python"}
    assert any(p.marks for p in readme) and any(not p.marks for p in readme)


@pytest.mark.parametrize("lang,code", blocks())
def test_a_runnable_block_runs(lang: str, code: str, tmp_path: Path) -> None:
    assert lang in ("bash", "python"), f"a runnable block is bash or python, not {lang}"
    venv = Path(sys.prefix)
    if lang == "bash" and ".venv/bin/" in code and not (venv / "bin" / "effnas").exists():
        pytest.skip(f"effnas is not installed in {venv} (bash tools/setup.sh installs it)")
    if "effnas search" in code and not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not in {FMNIST} (tools/setup.sh installs it)")
    (tmp_path / ".venv").symlink_to(venv)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if lang == "bash":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        (tmp_path / "example.py").write_text(code)
        cmd = [sys.executable, "example.py"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    if "effnas search" in code:  # a search wrote its run folder where the block ran
        assert list(tmp_path.glob("runs/*/best.yaml")), done.stdout[-2000:]
