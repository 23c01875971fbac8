"""search.py's ``--evaluator`` switch: the one-shot evaluator's flags, settings and run.

``--evaluator proxy`` (the default) trains every child as a proxy on Ray Tune
(:mod:`nas.search.run`); ``--evaluator oneshot`` trains a weight-sharing supernet on Ray
Train and then its top-k as proxies (:mod:`nas.search.oneshot`). With ``oneshot``,
``--workers`` is the number of Ray Train workers (and of children trained at once after),
``--cpus-per-trial`` the CPUs (torch threads) of each, ``--gpus-per-worker`` the GPUs of
each Ray Train worker; unset, they come from ``oneshot`` in the config (whose defaults are
the layout measured fastest on 2 cores, ``configs/oneshot-default.yaml``).
"""

from __future__ import annotations

import argparse
from typing import Any

from nas.cli.config import dump
from nas.core.errors import ConfigError

EVALUATORS = ("proxy", "oneshot")
EVALUATOR_FLAGS = {"evaluator": "evaluator"}


def add_evaluator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--evaluator", help="proxy (default): every child trained as a proxy on Ray "
                                       "Tune | oneshot: a weight-sharing supernet on Ray Train, "
                                       "then its top-k trained as proxies")
    p.add_argument("--gpus-per-worker", type=float,
                   help="GPUs per Ray Train worker of the supernet (--evaluator oneshot)")


def evaluator(cfg: dict[str, Any]) -> str:
    """The evaluator a config asks for (a run saved before the switch existed: proxy)."""
    name = cfg.get("evaluator") or "proxy"
    if name not in EVALUATORS:
        raise ConfigError(f"--evaluator {name!r}: use one of {', '.join(EVALUATORS)}")
    return name


def oneshot_settings(cfg: dict[str, Any], args: argparse.Namespace) -> Any:
    """The one-shot settings, with the layout flags of this command line written into
    ``cfg['oneshot']`` (so ``config.yaml`` records the layout the run used)."""
    from nas.supernet.settings import SupernetSettings
    if not isinstance(cfg.get("oneshot"), dict):
        raise ConfigError("oneshot: expected a mapping of one-shot settings, or the name of a "
                          "bundled one (oneshot-default)")
    o = dict(cfg["oneshot"])
    for flag, key in (("workers", "workers"), ("cpus_per_trial", "cpus_per_worker"),
                      ("gpus_per_worker", "gpus_per_worker")):
        if getattr(args, flag, None) is not None:
            o[key] = getattr(args, flag)
    cfg["oneshot"] = o
    return SupernetSettings.from_dict(o)


def run_oneshot(args: argparse.Namespace, cfg: dict[str, Any], s: Any) -> Any:
    """Run (or continue) a one-shot search; ``s`` is the search's :class:`SearchSettings`.
    Returns its :class:`~nas.search.run.SearchOutcome`, as the proxy evaluator's search does."""
    from nas.search.oneshot import oneshot_search

    o = oneshot_settings(cfg, args)
    return oneshot_search(s, o, args.resume, dump(cfg))
