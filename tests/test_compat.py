"""Old import paths keep working for one release, each with a DeprecationWarning, and give
the very objects the new paths give (so isinstance checks and patches agree)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from nas._compat import MOVED

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_warns_and_forwards(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=old.replace(".", r"\.")):
        module = importlib.import_module(old)
    targets = [importlib.import_module(t) for t in MOVED[old]]
    if len(targets) == 1:
        assert module is targets[0]
    public = [n for t in targets for n in getattr(t, "__all__", dir(t)) if not n.startswith("_")]
    for name in public[:20]:
        owner = next(t for t in targets if hasattr(t, name))
        assert getattr(module, name) is getattr(owner, name), name


def _forget(*names: str) -> None:
    for name in names:
        sys.modules.pop(name, None)


def test_names_users_imported_from_old_paths_still_resolve():
    _forget("nas.proxy", "nas.driver")
    with pytest.warns(DeprecationWarning):
        from nas.proxy import ProxyConfig, lr_at, train_proxy
    from nas.training.optim import lr_at as new_lr_at
    from nas.training.proxy import train_proxy as new_train_proxy
    from nas.training.recipe import Recipe
    assert ProxyConfig is Recipe and lr_at is new_lr_at and train_proxy is new_train_proxy
    with pytest.warns(DeprecationWarning):
        from nas.driver import ChildDriver, FixedList
    from controller import FixedList as new_fixed
    from nas.search.driver import ChildDriver as new_driver
    assert FixedList is new_fixed and ChildDriver is new_driver
    import nas.train
    with pytest.warns(DeprecationWarning, match="nas.training.engine.Engine"):
        trainer = nas.train.Trainer
    from nas.training.engine import Engine
    assert trainer is Engine


def test_an_unknown_old_name_is_still_an_attribute_error():
    _forget("nas.io")
    with pytest.warns(DeprecationWarning):
        import nas.io
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nas.io.nope  # noqa: B018


@pytest.mark.parametrize("module", ["nas.train", "nas.inspect"])
def test_the_module_commands_still_run(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
