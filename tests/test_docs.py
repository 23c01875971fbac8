"""The documentation site builds with every warning an error, and every relative link in the
README and the docs resolves.

``mkdocs build --strict`` (mkdocs.yml: MkDocs, Material, mkdocstrings) fails on a broken link
or anchor between pages, a page missing from the nav, a name of the API reference that
``import nas`` does not give, or any other warning. CI runs the fast suite, so this test is
the docs' CI step. It needs the ``docs`` extra, which tools/setup.sh installs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: the docs extra (pip install -e '.[docs]'; "
                    "tools/setup.sh installs it)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "api/index.html", "results/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    results = sorted(p.stem for p in (DOCS / "results").glob("*.md") if p.stem != "index")
    nav = (tmp_path / "site" / "results" / "index.html").read_text()
    for stem in results:  # every results page is in the nav (docs/hooks.py adds them)
        assert f"{stem}/" in nav, f"docs/results/{stem}.md is not in the site's navigation"


# --------------------------------------------------------------------------- relative links

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    return _CODE.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """The anchor of a heading, as MkDocs' toc and GitHub write it for plain headings."""
    text = re.sub(r"`([^`]*)`", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return re.sub(r"\s+", "-", text)


def _anchors(page: Path) -> set[str]:
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", _prose(page.read_text()),
                                             flags=re.M)}


def _links() -> list[tuple[Path, str]]:
    return [(page, m[1]) for page in PAGES for m in _LINK.finditer(_prose(page.read_text()))]


def test_the_pages_have_links() -> None:
    assert len(_links()) > 100


@pytest.mark.parametrize("page,target", _links(),
                         ids=lambda v: v if isinstance(v, str) else str(v.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
        return  # http(s), mailto: not checked here
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    where = f"{page.relative_to(ROOT)}: link {target!r}"
    assert dest.exists(), f"{where}: {dest} does not exist"
    if page.is_relative_to(DOCS):  # the site holds docs/ alone
        assert dest.is_relative_to(DOCS), f"{where} leaves docs/, which the site cannot follow"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{where}: no heading '{anchor}' in {dest.name}"
