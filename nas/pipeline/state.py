"""``pipeline.json``: each stage's status and outputs, and every trained model's.

The file is written atomically whenever a stage or a model starts or finishes, so an
interruption anywhere loses at most the work in progress.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nas.core.errors import ConfigError
from nas.core.files import write_text_atomic

STAGES = ("search", "scale", "train", "report")
STATE_FILE = "pipeline.json"
STATE_FORMAT = 1
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
# What a finished model's training ended with (nas.training.fit's statuses); every other
# outcome leaves the model to be trained (or continued) by the next --resume.
FINISHED = ("completed", "early_stopped", "diverged", "failed")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class PipelineState:
    """``pipeline.json``: each stage's status and outputs, and every trained model's."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def new(cls, out: Path, name: str) -> "PipelineState":
        stages = {s: {"status": PENDING} for s in STAGES}
        stages["train"]["models"] = {}
        return cls(out / STATE_FILE, {"format": STATE_FORMAT, "name": name, "created": _now(),
                                      "stages": stages})

    @classmethod
    def load(cls, out: Path) -> "PipelineState":
        path = out / STATE_FILE
        if not path.is_file():
            raise ConfigError(f"resume=True: {out} holds no pipeline to continue (no "
                              f"{STATE_FILE}); check out=")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: cannot be read ({type(e).__name__}); is the run folder "
                              "complete?") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise ConfigError(f"{path}: not a pipeline state file (format "
                              f"{data.get('format') if isinstance(data, dict) else '?'!r})")
        return cls(path, data)

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"][name]

    def status(self, name: str) -> str:
        return str(self.stage(name)["status"])

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.data, indent=2) + "\n")

    def start(self, name: str) -> None:
        st = self.stage(name)
        st["status"] = RUNNING
        st.setdefault("started", _now())
        st["sessions"] = int(st.get("sessions", 0)) + 1
        st.pop("error", None)
        self.save()

    def finish(self, name: str, seconds: float, **info: Any) -> None:
        st = self.stage(name)
        st.update(info)
        st["status"] = DONE
        st["finished"] = _now()
        st["seconds"] = round(float(st.get("seconds", 0.0)) + seconds, 1)
        self.save()

    def fail(self, name: str, error: str, seconds: float) -> None:
        st = self.stage(name)
        st["status"] = FAILED
        st["error"] = error
        st["seconds"] = round(float(st.get("seconds", 0.0)) + seconds, 1)
        self.save()

    def pause(self, name: str, seconds: float) -> None:
        """An interrupted stage: still to finish, its seconds so far kept."""
        st = self.stage(name)
        st["seconds"] = round(float(st.get("seconds", 0.0)) + seconds, 1)
        self.save()

    @property
    def models(self) -> dict[str, Any]:
        return self.stage("train").setdefault("models", {})


def started(state: PipelineState, stage: str) -> bool:
    return state.status(stage) != PENDING


def model_key(model_id: str, seed: int) -> str:
    return f"{model_id}/seed{seed}"
