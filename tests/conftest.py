"""Shared fixtures: a tiny data set in the real Fashion-MNIST file format."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from nas.data import write_idx


def load_bench(name: str) -> ModuleType:
    """``bench/<name>.py`` imported as module ``name`` (registered in ``sys.modules``, where
    dataclasses look their module up)."""
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def trained(out: Path) -> list[dict]:
    """The trained children of the search in ``out`` (``children.jsonl`` without cached rows
    and the reference), as written so far."""
    path = out / "children.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["status"] not in ("cached", "reference")]


def write_tiny_fashion_mnist(folder: Path, n_train: int = 600, n_test: int = 100,
                             seed: int = 0) -> Path:
    """Four gzipped IDX files named as the real ones; classes differ in mean brightness and a
    class-specific stripe, so a small model learns them in a few steps."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, y in enumerate(labels):
            images[i, 2 * y:2 * y + 3, :] += 150
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="session")
def tiny_fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_fashion_mnist(tmp_path_factory.mktemp("tiny-fmnist"))
