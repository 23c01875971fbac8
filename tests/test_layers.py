"""The layers of the code: each package sits on one floor and imports only from lower floors
(or from itself); no module takes part in an import circle; torch and Ray enter only where
a layer says they may.

The rules are read from the source (every import statement, at module level or inside a
function: an import put inside a function to dodge a circle is still part of it), so a new
module that breaks them fails here before anyone runs it. docs/architecture.md describes
the same floors in words.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A module may import its own package and any package on a lower floor.
FLOORS: list[tuple[str, ...]] = [
    ("nas.core",),
    ("nas.arch",),
    ("nas.data",),
    ("nas.training", "controller", "search_space", "scaler", "nas.latency"),
    ("nas.supernet",),
    ("nas.ray",),                      # the Ray adapters: told what to run, know no search
    ("nas.search",),                   # the search, multi-trial and one-shot, on nas.ray
    ("nas.scaling", "nas.fidelity"),   # jobs that train children as the search does
    ("nas.pipeline",),                 # search, scale, train and report in one run
    ("nas.cli",),
    ("nas",),  # the package's own API (nas/__init__.py: names, and the commands as functions
               # from nas.cli.api, imported lazily)
]
# Entry points beside the ``effnas`` command (nas/cli/effnas.py): the clone's two scripts,
# thin modules that belong to the command-line floor.
ENTRY_POINTS = {"search": "nas.cli", "scale": "nas.cli"}
PROJECT_TOP = ("nas", "controller", "search_space", "scaler", "search", "scale")

# Modules that may import torch (directly); everything else must not.
TORCH_ALLOWED = {
    "nas.arch.builder", "nas.arch.timm_model", "nas.latency.measure",
    "nas.training.engine", "nas.training.feeder", "nas.training.device", "nas.training.optim",
    "nas.training.rmsprop",
    "nas.training.proxy", "nas.training.fit", "nas.training.checkpoint", "nas.training.augment",
    "controller.ppo", "controller.policy",
    "nas.supernet.model", "nas.supernet.score", "nas.supernet.train",
    "nas.ray.train",          # the supernet on Ray Train workers
    "nas.search.driver",      # the driver's state file (torch.save: a policy's tensors)
    "nas.search.runlog",      # TensorBoard's writer
}
# Modules that may import Ray: the adapters of nas.ray (its start and stop, the Tune searcher,
# the Tune callbacks and scheduler, Ray Train); nas.ray.leftovers reads /proc, not Ray.
RAY_ALLOWED = {"nas.ray.runtime", "nas.ray.searcher", "nas.ray.tune_options", "nas.ray.train",
               "nas.ray.latency"}  # a device's latency table built on its node


def _source_modules() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for pkg in ("nas", "controller", "search_space", "scaler"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    for entry in ("search", "scale"):
        files[entry] = ROOT / f"{entry}.py"
    return files


MODULES = _source_modules()


def package_of(module: str) -> str | None:
    """The floor-table name a project module belongs to (None: not a project module)."""
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    parts = module.split(".")
    if parts[0] not in PROJECT_TOP:
        return None
    if parts[0] == "nas":
        if len(parts) >= 2 and f"nas.{parts[1]}" in {p for f in FLOORS for p in f}:
            return f"nas.{parts[1]}"
        return "nas" if len(parts) == 1 else "nas.<unknown>"
    return parts[0]


def floor_of(package: str) -> int:
    for i, floor in enumerate(FLOORS):
        if package in floor:
            return i
    raise AssertionError(f"{package} is on no floor; add it to FLOORS")


def imports_of(path: Path, module: str,
               modules: Mapping[str, Path] = MODULES) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file; ``from a import b`` yields
    ``a.b`` when ``a.b`` is one of ``modules`` (a submodule), else ``a``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in modules else base, node.lineno))
    return out


def test_every_project_module_is_on_a_floor():
    for module in MODULES:
        package = package_of(module)
        assert package is not None and package != "nas.<unknown>", module
        floor_of(package)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module):
    package = package_of(module)
    here = floor_of(package)
    for imported, line in imports_of(MODULES[module], module):
        target = package_of(imported)
        if target is None:
            continue
        assert target != "nas.<unknown>", (
            f"{module}:{line} imports {imported}, which is not a module of the layered "
            "package")
        if target == package:
            continue
        there = floor_of(target)
        assert there < here, (
            f"{module}:{line} imports {imported} ({target}, floor {there}) from floor {here} "
            f"({package}): imports must go down a floor (see docs/architecture.md)")


def project_module(name: str, modules: Mapping[str, Path]) -> str | None:
    """The project module an imported name loads: the longest prefix of it that is one of
    ``modules`` (None: not the project's)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: Mapping[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: first line}, every import counted (module and
    function level; ``from pkg import sub`` is an import of the submodule ``pkg.sub``)."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for imported, line in imports_of(path, module, modules):
            target = project_module(imported, modules)
            if target is not None and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def circles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_takes_part_in_an_import_circle():
    graph = import_graph(MODULES)
    found = circles(graph)
    lines = []
    for component in found:
        lines.append(" <-> ".join(component))
        lines += [f"    {a}:{graph[a][b]} imports {b}" for a in component for b in graph[a]
                  if b in component]
    assert not found, "import circles (move what both need below both):\n" + "\n".join(lines)


def test_the_circle_check_counts_imports_inside_functions(tmp_path):
    # a imports b at the top; b imports a inside a function, as "from pkg import a".
    (tmp_path / "a.py").write_text("import pkg.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from pkg import a\n    return a\n")
    (tmp_path / "c.py").write_text("from pkg.a import x\n")
    modules = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py",
               "pkg.c": tmp_path / "c.py"}
    graph = import_graph(modules)
    assert graph == {"pkg.a": {"pkg.b": 1}, "pkg.b": {"pkg.a": 2}, "pkg.c": {"pkg.a": 1}}
    assert circles(graph) == [["pkg.a", "pkg.b"]]
    assert circles({"x": {"y": 1}, "y": {}}) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_torch_and_ray_enter_only_where_allowed(module):
    for imported, line in imports_of(MODULES[module], module):
        top = imported.split(".")[0]
        if top == "torch":
            assert module in TORCH_ALLOWED, f"{module}:{line} imports torch"
        if top == "ray":
            assert module in RAY_ALLOWED, f"{module}:{line} imports Ray (only the adapter may)"


def test_the_allowed_lists_are_tight():
    # Every module allowed torch or Ray imports it: a module that stops doing so leaves the list.
    for allowed, top in ((TORCH_ALLOWED, "torch"), (RAY_ALLOWED, "ray")):
        for module in sorted(allowed):
            assert module in MODULES, f"{module} is listed but is no module"
            tops = {imported.split(".")[0] for imported, _ in imports_of(MODULES[module], module)}
            assert top in tops, f"{module} no longer imports {top}; take it off the list"


def test_the_rules_catch_an_import_that_goes_up(tmp_path):
    # The checker itself: a lower floor importing a higher one, and torch where it may not go.
    bad = tmp_path / "bad.py"
    bad.write_text("from nas.search.driver import ChildDriver\nimport torch\n")
    found = imports_of(bad, "nas.arch.bad")
    assert ("nas.search.driver", 1) in found and ("torch", 2) in found
    assert floor_of(package_of("nas.search.driver")) > floor_of(package_of("nas.arch.bad"))
    assert "nas.arch.bad" not in TORCH_ALLOWED


def test_the_torch_free_layers_import_without_torch():
    # At run time too: the model, data, space, strategies' base, scaling and settings.
    code = ("import sys; import nas, nas.arch.cost, nas.arch.io, nas.arch.plan, nas.latency.keys, "
            "nas.data, nas.training.recipe, "
            "nas.search.settings, nas.supernet.plan, nas.supernet.settings, search_space, "
            "scaler, controller, nas.cli.search, nas.cli.scale, nas.cli.pipeline, nas.cli.api, "
            "nas.ray.runtime, nas.ray.searcher, nas.ray.train, nas.search.run, "
            "nas.search.oneshot, nas.scaling.grid, nas.fidelity.run, nas.pipeline.run; "
            "bad = sorted(m for m in ('torch', 'ray', 'optuna', 'pandas') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
