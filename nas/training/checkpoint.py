"""Checkpoints and exports: atomic ``torch.save``, strict loading, TorchScript/ONNX export
with a check that the written model gives the trained model's outputs."""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.core.errors import ConfigError, NasError
from nas.core.files import atomic_file
from nas.training.settings import EXPORTS

CHECKPOINT_FORMAT = "nas.train/1"


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint to continue from; start the run without "
                          "resume=True (or give the run's out=)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); it is corrupt") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: not a nas.train checkpoint (format "
                          f"{ckpt.get('format') if isinstance(ckpt, dict) else '?'!r})")
    return ckpt




def check_export_available(kind: str) -> None:
    if kind == "onnx":
        import importlib.util
        if importlib.util.find_spec("onnx") is None:
            raise ConfigError("export='onnx' needs the onnx package: pip install onnx (or use "
                              "export='torchscript')")


def export_model(model: nn.Module, example: torch.Tensor, kind: str, out: Path,
                 preprocess: dict[str, Any]) -> dict[str, Any]:
    """Write the model for inference and check that the file loads and gives the same logits.

    The exported network takes images normalised as ``preprocess`` says (written beside it).
    """
    m = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    x = example.cpu().float().contiguous()
    with torch.inference_mode():
        want = m(x)
    if kind == "torchscript":
        path = out / "model.pt"
        with warnings.catch_warnings():  # torch.jit is deprecated but still the portable format
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.no_grad():
                traced = torch.jit.trace(m, x, check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf, _extra_files={"preprocess.json": json.dumps(preprocess)})
            with atomic_file(path, "wb") as f:
                f.write(buf.getvalue())
            loaded = torch.jit.load(str(path), map_location="cpu")
            with torch.inference_mode():
                got = loaded(x)
    else:  # onnx
        import importlib.util
        path = out / "model.onnx"
        dynamo = importlib.util.find_spec("onnxscript") is not None
        torch.onnx.export(m, (x,), str(path), input_names=["images"], output_names=["logits"],
                          dynamo=dynamo, external_data=False,
                          **({} if dynamo else {"dynamic_axes": {"images": {0: "batch"}}}))
        import onnx
        onnx.checker.check_model(onnx.load(str(path)))
        if importlib.util.find_spec("onnxruntime") is None:
            return {"format": kind, "path": path.name, "checked": "onnx.checker only (install "
                    "onnxruntime to compare outputs)", "max_abs_diff": None}
        import onnxruntime
        sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
    diff = float((got - want).abs().max())
    tol = 1e-4 * max(1.0, float(want.abs().max()))
    if not diff <= tol:
        raise NasError(f"{path}: the exported model's outputs differ from the trained model's "
                       f"by {diff:.3g} (tolerance {tol:.3g}); use export='none' and report it")
    return {"format": kind, "path": path.name, "checked": "loaded and compared",
            "max_abs_diff": diff}

