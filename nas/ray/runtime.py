"""Starting, joining and stopping Ray, and keeping it quiet.

Ray does not talk over the command (:func:`quiet_ray`): its Python logging (Ray core and
Tune) reaches the terminal only for errors; its warnings and hints (token authentication,
``Tuner.restore``) go to the run folder's ``ray.log``, and Ray's processes log to their
session folder as always. Ctrl-C and SIGTERM are the command's (a KeyboardInterrupt: what
finished is kept and the command says how to resume): the SIGTERM handler ``ray.init``
installs (a drain of up to 30 s, then Ray's C++ stack dump on the terminal) is replaced by
the command's again. A fresh local Ray first stops what dead sessions of this project left
running (:mod:`nas.ray.leftovers`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from nas.core.errors import ConfigError
from nas.ray import leftovers


def ray_address(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``RAY_ADDRESS``, else None (a fresh local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


CONNECT_TIMEOUT = 5.0  # seconds to wait for a cluster's head to answer


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse a cluster address nothing answers at, within ``timeout`` seconds.

    ``ray.init`` retries a dead address for minutes without a message and ignores Ctrl-C
    while it does, so the head's port (``HOST:PORT`` or ``ray://HOST:PORT``) is tried with a
    plain TCP connection first. ``local``, ``auto`` and no address are left to Ray.
    """
    import socket

    given = address
    address = ray_address(address)
    if not address or address in ("local", "auto"):
        return
    option = "address=" if given else "RAY_ADDRESS "
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{option}{address!r}: expected HOST:PORT of a Ray cluster's head "
                          "(e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001), or leave it unset "
                          "for a local Ray")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise ConfigError(f"{option}{address}: no Ray cluster answers there ({why}, within "
                          f"{timeout:g} s); start it (ray start --head) or check the address, "
                          "or leave it unset for a local Ray") from None


def init_ray(address: str | None, num_cpus: int | None = None,
             run_dir: Path | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a fresh local one.

    A fresh local Ray first stops what dead local sessions of this project left running
    (see :mod:`nas.ray.leftovers`), then records its own session so the next start can
    do the same for it; both are logged in ``run_dir/ray.log``.
    """
    import ray
    log_file = None if run_dir is None else run_dir / "ray.log"
    quiet_ray(log_file)
    if ray.is_initialized():
        return
    address = ray_address(address)
    check_address(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                              "include_dashboard": False}
    try:
        with _keep_sigterm_handler():
            if address:
                ray.init(address=address, **kwargs)
            else:
                leftovers.stop_dead_sessions(leftovers.ray_temp_root(), log_file)
                context = ray.init(address="local", num_cpus=num_cpus, **kwargs)
                session = (context.address_info or {}).get("session_dir")
                if session:
                    leftovers.record_session(Path(session), log_file, run_dir)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local cluster"
        raise ConfigError(f"could not start or join Ray at {where}: {str(e).splitlines()[0]}; "
                          "check address= (or RAY_ADDRESS), or leave it unset for a local run") from None


@contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """``ray.init`` replaces the SIGTERM handler with one that drains the node for up to
    30 s (``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S``) and lets the dying processes log to
    the terminal. A handler of the program's own (the commands': stop as Ctrl-C does, see
    :func:`nas.cli.parser.run_main`) is put back; without one, Ray's stays."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and callable(previous):
            signal.signal(signal.SIGTERM, previous)


class _TerminalFilter(logging.Filter):
    """On the terminal, only Ray's errors: its warnings and hints (token authentication,
    ``Tuner.restore``, ...) go to the run folder's ``ray.log``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


class _RunLog(logging.Handler):
    """Appends each record to ``path`` (opened per record: Ray logs little), once its folder
    exists; before that, and on a write error, the record is dropped."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.path.parent.is_dir():
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a log line must never stop a run
            pass


_log_handler: logging.Handler | None = None


def quiet_ray(log_file: Path | None) -> None:
    """Keep Ray's Python logging (the ``ray`` logger: Ray core, Tune) off the terminal but
    for errors, and write it, warnings up, to ``log_file`` (the run folder's ``ray.log``,
    beside what :mod:`nas.ray.leftovers` logs there) when given. Ray's processes log to
    their session folder as before, and workers' output is not sent here
    (``log_to_driver=False``)."""
    global _log_handler
    import ray  # noqa: F401 - importing Ray sets up the "ray" logger and its stderr handler

    logger = logging.getLogger("ray")
    if _log_handler is not None:
        logger.removeHandler(_log_handler)
        _log_handler = None
    for handler in logger.handlers:
        if not any(isinstance(f, _TerminalFilter) for f in handler.filters):
            handler.addFilter(_TerminalFilter())
    if log_file is not None:
        _log_handler = _RunLog(log_file)
        logger.addHandler(_log_handler)


def ray_running() -> bool:
    """Whether this process has started or joined Ray (without importing Ray if it has not)."""
    import sys
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def shutdown_ray() -> None:
    """Stop this process's local Ray (or leave the cluster it joined), if it started one."""
    import ray
    if ray.is_initialized():
        ray.shutdown()


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> dict[str, float]:
    """Refuse requests the cluster can never meet (Tune would wait for them forever)."""
    import ray
    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
    if gpus_per_trial > 0 and gpus < gpus_per_trial:
        raise ConfigError(f"gpus_per_trial={gpus_per_trial:g} but the Ray cluster has "
                          f"{gpus:g} GPUs; use gpus_per_trial=0 or join a cluster with GPUs")
    if cpus_per_trial > cpus:
        raise ConfigError(f"cpus_per_trial={cpus_per_trial:g} but the Ray cluster has "
                          f"{cpus:g} CPUs; ask for fewer")
    return {"CPU": cpus, "GPU": gpus}
