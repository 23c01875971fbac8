"""The wheel: ``pip wheel .`` holds every module and the bundled configs, and installed into a
fresh virtual environment it gives the ``effnas`` command, whose subcommands run from the
installed package (not from this clone) and find the bundled configs there.

The fresh environment gets no copy of the dependencies: a path entry makes the site-packages
of the environment running the tests (torch, Ray, ...) visible after its own. A path entry
runs none of that folder's .pth files, so an editable install of this clone stays invisible,
and the commands run with no PYTHONPATH from a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "nas", "configs", "search_space", "controller", "scaler")
FAST = ["--target-flops", "400M", "--preset", "smoke", "--set", "proxy.train_subset=256",
        "--set", "proxy.resolution=16", "--set", "data.val_size=100"]


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


class Installed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        self.wheel = self._build()
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.effnas = self.venv / "bin" / "effnas"
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        self._install()

    def _build(self) -> Path:
        # From a copy of the sources, so the build leaves nothing in the clone.
        src = self.root / "src"
        for part in SOURCES:
            path = ROOT / part
            if path.is_dir():
                shutil.copytree(path, src / part,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                src.mkdir(exist_ok=True)
                shutil.copy2(path, src / part)
        dist = self.root / "dist"
        run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(dist)],
            env=self.env, cwd=self.root)
        (wheel,) = dist.glob("effnas-*.whl")
        return wheel

    def _install(self) -> None:
        run([sys.executable, "-m", "venv", "--without-pip", str(self.venv)], env=self.env)
        # Install before the dependencies are visible: pip would take this clone's own
        # (editable) install there for the wheel and skip it.
        run([sys.executable, "-m", "pip", "--python", str(self.python), "install", "--no-deps",
             "-q", str(self.wheel)], env=self.env, cwd=self.root)
        purelib = run([str(self.python), "-c", "import sysconfig; "
                       "print(sysconfig.get_paths()['purelib'])"], env=self.env).stdout.strip()
        deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
        (Path(purelib) / "_effnas_test_dependencies.pth").write_text("\n".join(deps) + "\n")

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.effnas), *args]
        if check:
            return run(cmd, cwd=self.cwd, env=self.env, timeout=900)
        return subprocess.run(cmd, capture_output=True, text=True, cwd=self.cwd, env=self.env,
                              timeout=900)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return Installed(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_every_module_and_config(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = {str(p.relative_to(ROOT)) for pkg in ("nas", "search_space", "controller", "scaler")
                for p in (ROOT / pkg).rglob("*.py")}
    expected |= {f"nas/_configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    expected.add("nas/py.typed")  # the PEP 561 marker: type checkers read the hints
    assert expected <= names, sorted(expected - names)
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(installed.wheel).read(entry).decode()
    assert "[console_scripts]" in text and "effnas = nas.cli.effnas:main" in text
    meta = zipfile.ZipFile(installed.wheel).read(entry.replace("entry_points.txt", "METADATA"))
    for extra in ("test", "onnx", "timm"):
        assert f"Provides-Extra: {extra}" in meta.decode()


def test_the_installed_package_is_the_wheel(installed: Installed) -> None:
    done = run([str(installed.python), "-c",
                "import nas; print(nas.__file__); print(nas.configs_dir()); "
                "print(nas.config_path('mnasnet-space'))"],
               cwd=installed.cwd, env=installed.env)
    module, configs, space = done.stdout.split()
    assert module.startswith(str(installed.venv)) and module.endswith("site-packages/nas/__init__.py")
    assert configs == str(Path(module).parent / "_configs")
    assert Path(space).is_file()


def test_every_command_helps_under_its_own_name(installed: Installed) -> None:
    top = installed("--help").stdout
    assert top.startswith("usage: effnas COMMAND")
    for name in ("search", "scale", "train", "inspect", "fidelity"):
        assert installed(name, "--help").stdout.startswith(f"usage: effnas {name} "), name
    bad = installed("train", "efficientnet-b0", "--epochs", "x", check=False)
    assert bad.returncode == 2 and bad.stderr.endswith("; see effnas train --help\n")
    assert bad.stderr.count("\n") == 1


def test_inspect_reads_the_bundled_configs(installed: Installed) -> None:
    table = installed("inspect", "efficientnet-b0").stdout
    assert table.splitlines()[-1] == \
        "total: 5,288,548 params, 385.8 M MACs (385,814,752 multiply-adds)"
    timm = installed("inspect", "mobilenetv2", "--format", "timm").stdout.split()
    assert timm[0] == "ds_r1_k3_s1_c16" and len(timm) == 7


def test_a_smoke_search_from_the_wheel(installed: Installed, tiny_fmnist: Path) -> None:
    out = installed.root / "run"
    done = installed("search", *FAST, "--budget", "2", "--set",
                     "strategy_options={batch_size: 2}", "--data", str(tiny_fmnist),
                     "--out", str(out))
    assert "children 2/2" in done.stdout and "best child" in done.stdout
    for name in ("best.yaml", "children.csv", "summary.json", "config.yaml"):
        assert (out / name).is_file(), name


def test_the_setup_venv_has_the_effnas_command() -> None:
    """The README's first command, ``.venv/bin/effnas``, after ``bash tools/setup.sh``."""
    venv = ROOT / ".venv"
    if Path(sys.prefix).resolve() != venv.resolve():
        pytest.skip("the tests are not running in this clone's .venv (bash tools/setup.sh "
                    "makes it)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = run([str(venv / "bin" / "effnas"), "search", "--help"], env=env, cwd=ROOT)
    assert done.stdout.startswith("usage: effnas search ")
