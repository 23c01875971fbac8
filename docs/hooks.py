"""MkDocs hooks of the documentation site (mkdocs.yml names this file under ``hooks``).

- Every page under ``docs/results/`` is added to the nav's Results section (after the pages
  listed there, by file name), so one page per claim needs no line in mkdocs.yml.
- The API reference (``api.md``) documents every name of ``nas.__all__``: a name that no
  ``::: nas.NAME`` line of the page names is added under "Other names", so a new top-level
  name is in the reference without an edit here.
- Sphinx roles in docstrings (``:class:`X```, ``:func:`~a.b.c```), which the API reference
  renders as Markdown, are shown as the code they name.

``TypeDocstrings`` is a griffe extension (mkdocs.yml loads it for mkdocstrings): the reference
is made by importing ``nas``, and an inspected class attribute (a dataclass field's default)
takes its value's type's docstring (``str``'s, ``int``'s); it is dropped, and the field shows
in the class's signature instead.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import griffe

RESULTS = "results"


def on_config(config: Any) -> Any:
    docs = Path(config["docs_dir"])
    for item in config["nav"] or []:
        if isinstance(item, dict) and "Results" in item:
            section = item["Results"]
            listed = {entry if isinstance(entry, str) else next(iter(entry.values()))
                      for entry in section}
            for page in sorted((docs / RESULTS).glob("*.md")):
                path = f"{RESULTS}/{page.name}"
                if path not in listed:
                    section.append(path)
    return config


API_PAGE = "api.md"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != API_PAGE:
        return markdown
    import nas
    named = set(re.findall(r"^::: nas\.(\w+)\s*$", markdown, flags=re.M))
    missing = [name for name in nas.__all__ if name not in named]
    if missing:
        markdown += "\n\n## Other names\n\n" + "".join(f"::: nas.{n}\n\n" for n in missing)
    return markdown


_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):<code>~?([^<]*)</code>")


def on_page_content(html: str, **kwargs: Any) -> str:
    # ``~a.b.C`` is written as ``C`` (Sphinx's short form); any other target in full.
    return _ROLE.sub(lambda m: f"<code>{m[1].rsplit('.', 1)[-1] if '~' in m[0] else m[1]}</code>",
                     html)


class TypeDocstrings(griffe.Extension):
    def on_attribute_instance(self, *, node: Any, attr: Any, agent: Any, **kwargs: Any) -> None:
        value = getattr(node, "obj", None)
        if attr.docstring is None or value is None:
            return
        if attr.docstring.value.strip() == (inspect.getdoc(type(value)) or "").strip():
            attr.docstring = None
