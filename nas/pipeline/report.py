"""The pipeline's report: what was measured, at which scale, and the trained models'
accuracy against their multiply-adds (``report/report.md``, ``accuracy_vs_macs.png``,
``results.csv``, ``report.json``).

Validation accuracy (images held out of the training set) is what every choice of the run
used: the search's best child, the grid's coefficients, each model's kept epoch. The test
split is scored once per trained model, with its kept weights, and chooses nothing. A
difference between two models is called one only with at least three seeds each and
ranges that do not overlap; otherwise the report says it is not shown.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

import scaler
from nas.arch.cost import count_macs
from nas.arch.io import load_spec
from nas.arch.units import format_macs
from nas.core.files import write_csv, write_text_atomic
from nas.pipeline.settings import PipelinePlan
from nas.pipeline.state import PipelineState, model_key
from nas.training.recipe import describe_augment

MIN_SEEDS_FOR_A_CLAIM = 3
GROUP_LABELS = {"baseline": "baseline", "budget": "budget member",
                "family": "rule-family member", "reference": "reference model"}
COLUMNS = ("model", "group", "seed", "status", "macs", "params", "spec_resolution",
           "train_resolution", "trained_macs", "epochs_run", "best_epoch", "best_val_accuracy",
           "test_accuracy", "seconds", "spec", "checkpoint", "export")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rows(p: PipelinePlan, state: PipelineState) -> list[dict[str, Any]]:
    """One row per trained model and seed, from the state file and each ``metrics.json``."""
    rows = []
    for m in state.stage("scale")["models"]:
        for seed in p.train.seeds:
            rec = state.models.get(model_key(m["id"], seed), {})
            metrics = _read_json(Path(rec["metrics"])) if rec.get("metrics") else None
            macs = (metrics or {}).get("macs", {})
            rows.append({
                "model": m["id"], "group": m["group"], "seed": seed,
                "status": rec.get("status", "not trained"), "macs": m["macs"],
                "params": (metrics or {}).get("params"),
                "spec_resolution": m["spec_resolution"],
                "train_resolution": m["train_resolution"],
                "trained_macs": macs.get("at_trained_resolution"),
                "epochs_run": rec.get("epochs_run"), "best_epoch": rec.get("best_epoch"),
                "best_val_accuracy": rec.get("best_val_accuracy"),
                "test_accuracy": rec.get("test_accuracy"), "seconds": rec.get("seconds"),
                "spec": m["spec"], "checkpoint": rec.get("checkpoint"),
                "export": rec.get("export"), "error": rec.get("error"),
                "metrics": metrics})
    return rows


def seed_summary(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any] | None:
    """Mean and range of ``key`` over runs (seeds), in the form :func:`compare_to` takes."""
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    if not vals:
        return None
    return {"n": len(vals), "mean": statistics.mean(vals), "low": min(vals), "high": max(vals)}


def _per_model(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = out.setdefault(r["model"], {"model": r["model"], "group": r["group"],
                                        "macs": r["macs"], "spec": r["spec"], "rows": []})
        m["rows"].append(r)
    for m in out.values():
        m["val"] = seed_summary(m["rows"], "best_val_accuracy")
        m["test"] = seed_summary(m["rows"], "test_accuracy")
    return list(out.values())


def compare_to(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> str:
    """Whether summary ``a`` is above or below ``b``, by the house rule on seeds."""
    if a is None or b is None:
        return "not measured"
    if min(a["n"], b["n"]) < MIN_SEEDS_FOR_A_CLAIM:
        return (f"not shown ({min(a['n'], b['n'])} seed(s); a claim needs "
                f"{MIN_SEEDS_FOR_A_CLAIM})")
    if a["low"] > b["high"]:
        return f"above ({a['mean'] - b['mean']:+.4f}; ranges do not overlap)"
    if a["high"] < b["low"]:
        return f"below ({a['mean'] - b['mean']:+.4f}; ranges do not overlap)"
    return f"not shown (ranges overlap; {a['mean'] - b['mean']:+.4f} in the means)"


def _fmt(s: Mapping[str, Any] | None) -> str:
    if s is None:
        return "-"
    if s["n"] == 1:
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} ({s['low']:.4f}-{s['high']:.4f}, {s['n']} seeds)"


def _compare_points(folder: Path) -> list[dict[str, Any]]:
    """The single-dimension scalings' proxy accuracies (``scale/compare``)."""
    table = folder / "compare.csv"
    if not table.is_file():
        return []
    points = []
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            slug = row["model"].replace(" ", "-")
            spec_path = folder / f"{slug}.yaml"
            try:
                acc = float(row["proxy accuracy"])
            except ValueError:
                acc = None
            macs = count_macs(load_spec(spec_path)) if spec_path.is_file() else None
            points.append({"label": row["model"], "macs": macs, "accuracy": acc,
                           "proxy_resolution": row["proxy resolution"],
                           "spec": str(spec_path)})
    return points


def _plot(models: Sequence[Mapping[str, Any]], compare: Sequence[Mapping[str, Any]],
          path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if compare else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 5), squeeze=False)
    ax = axes[0][0]
    styles = {"baseline": ("*", "tab:red", 14), "budget": ("o", "tab:blue", 8),
              "family": ("s", "tab:green", 7), "reference": ("D", "tab:gray", 7)}
    for group, (marker, color, size) in styles.items():
        pts = sorted((m for m in models if m["group"] == group and m["val"] is not None),
                     key=lambda m: m["macs"])
        if not pts:
            continue
        xs = [m["macs"] / 1e6 for m in pts]
        ys = [m["val"]["mean"] for m in pts]
        err = [[m["val"]["mean"] - m["val"]["low"] for m in pts],
               [m["val"]["high"] - m["val"]["mean"] for m in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt=marker + ("-" if group in ("budget", "family")
                                                      else ""),
                    color=color, markersize=size, capsize=3, label=GROUP_LABELS[group])
        for m, x, y in zip(pts, xs, ys):
            ax.annotate(m["model"], (x, y), textcoords="offset points", xytext=(5, 5),
                        fontsize=8)
    _log_x(ax)
    ax.set_xlabel("MACs (millions; spec resolution, 1000 classes)")
    ax.set_ylabel("validation accuracy (best epoch)\nbars: range over seeds where more than one")
    ax.set_title("fully trained models")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if compare:
        ax2 = axes[0][1]
        pts = [c for c in compare if c["macs"] is not None and c["accuracy"] is not None]
        for c in pts:
            marker = "*" if c["label"] == "baseline" else ("o" if c["label"] == "compound"
                                                          else "^")
            ax2.plot(c["macs"] / 1e6, c["accuracy"], marker, markersize=10,
                     label=c["label"])
        _log_x(ax2)
        ax2.set_xlabel("MACs (millions; spec resolution, 1000 classes)")
        ax2.set_ylabel("proxy validation accuracy (one run)")
        ax2.set_title("single-dimension scalings (proxy training)")
        ax2.grid(True, alpha=0.3)
        ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log_x(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)


def _recipe_text(r: Any, data_name: str, val: Any) -> str:
    subset = f"{r.train_subset:,} images" if r.train_subset else "every training image"
    return (f"{r.epochs} epoch(s) over {subset} (a fixed subset), {r.resolution or 'native'} px, "
            f"width x{r.width_mult:g}, {r.optimizer} lr {r.lr:g} {r.schedule}, batch "
            f"{r.batch_size}; {data_name}, {val} validation images held out of the training set")


def _stage_seconds(state: PipelineState) -> str:
    parts = []
    for stage in ("search", "scale", "train", "report"):
        sec = state.stage(stage).get("seconds")
        if sec is not None:
            parts.append(f"{stage} {float(sec):.0f} s")
    return ", ".join(parts)


def write_report(p: PipelinePlan, state: PipelineState) -> Path:
    """Write ``OUT/report/`` and return the path of ``report.md``."""
    folder = p.out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    rows = _rows(p, state)
    models = _per_model(rows)
    scale = state.stage("scale")
    compare = _compare_points(Path(scale["compare"])) if scale.get("compare") else []
    _plot(models, compare, folder / "accuracy_vs_macs.png", f"pipeline {p.name}")

    write_csv(folder / "results.csv", COLUMNS,
              ([_cell(r[k]) for k in COLUMNS] for r in rows))
    report = {"name": p.name, "out": str(p.out), "commands": state.data.get("commands", []),
              "stages": {s: {k: v for k, v in state.stage(s).items() if k != "models"}
                         for s in ("search", "scale", "train")},
              "models": [{k: v for k, v in m.items() if k != "rows"} for m in models],
              "runs": [{k: v for k, v in r.items() if k != "metrics"} for r in rows],
              "compare": compare}
    write_text_atomic(folder / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    md = folder / "report.md"
    write_text_atomic(md, _markdown(p, state, rows, models, compare))
    return md


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def _markdown(p: PipelinePlan, state: PipelineState, rows: Sequence[Mapping[str, Any]],
              models: Sequence[Mapping[str, Any]], compare: Sequence[Mapping[str, Any]]) -> str:
    t = p.train.template
    search = state.stage("search")
    scale = state.stage("scale")
    lines = [f"# Pipeline {p.name}", ""]
    commands = state.data.get("commands") or ([p.command] if p.command else [])
    if commands:
        lines += ["Commands (one per session):", ""] + [f"    {c}" for c in commands] + [""]
    lines += [f"Run folder: `{p.out}`; stage times: {_stage_seconds(state)}.", ""]

    # What was measured, and at which scale.
    lines += ["## What was measured", ""]
    if p.search is not None and search.get("summary"):
        s, sm = p.search, search["summary"]
        best = sm.get("best") or {}
        proxy = _recipe_text(s.trials.recipe, s.data.source, s.data.val_size)
        nan = float("nan")
        lines.append(
            f"- **Search** (`{s.out}`): {s.strategy} over `{s.space}`, {sm['children_trained']} "
            f"children trained ({sm['children_failed']} failed, "
            f"{sm.get('children_timeout', 0)} timed out), target "
            f"{format_macs(s.target_macs)} MACs (reward {s.reward.form}, w {s.reward.w:g}), "
            f"seed {s.seed}. Proxy: {proxy}. Best child (by proxy validation reward): reward "
            f"{best.get('reward', nan):.4f}, proxy validation accuracy "
            f"{best.get('accuracy', nan):.4f}, {format_macs(best.get('macs', 1))} MACs -> "
            f"`{search['baseline']}`.")
    else:
        lines.append(f"- **Search**: not run; the baseline was given (`{search.get('baseline')}`).")
    c = scale.get("coefficients", {})
    how = (f"fitted by the grid (phi {p.scale.phi:g}, step {p.scale.grid.step:g}, tol "
           f"{p.scale.grid.tol:g}, the best {p.scale.grid.recheck_top} re-trained with "
           f"{p.scale.grid.recheck_seeds} more seed(s)); proxy: "
           f"{_recipe_text(p.scale.trials.recipe, p.scale.data.source, p.scale.data.val_size)}"
           if p.grid and p.scale.trials is not None else "given, no grid trained")
    lines.append(f"- **Coefficients**: alpha {c.get('alpha')}, beta {c.get('beta')}, gamma "
                 f"{c.get('gamma')}: {how} (`{scale.get('coefficients_from')}`).")
    recheck = _recheck_line(scale)
    if recheck:
        lines.append(f"  Grid decision: {recheck}")
    fams = ", ".join(f"`{v}`" for v in scale.get("families", {}).values())
    lines.append(f"- **Family**: {fams}; MACs are counted at each spec's own resolution with "
                 "1000 classes and 3 input channels (the papers' setting).")
    metrics = next((r["metrics"] for r in rows if r["metrics"]), None)
    data = (metrics or {}).get("data", {})
    lines.append(
        f"- **Training** (`nas.training.fit`, one model after another): {t.epochs} epochs "
        f"over {'every training image' if t.train_subset is None else f'{t.train_subset:,} images'}"
        f" per epoch (drawn afresh each epoch), batch {t.batch_size}, {t.optimizer} lr "
        f"{t.lr if t.lr is not None else 'auto'} {t.schedule}, warm-up {t.warmup_epochs}, label "
        f"smoothing {t.label_smoothing}, crop and flip {describe_augment(t.augment)}"
        f"{', ' + t.auto_augment if t.auto_augment != 'none' else ''}, weight average "
        f"{t.ema_decay if t.ema_decay else 'off'}, width x{t.width_mult if t.width_mult else 1:g}; "
        f"seeds {', '.join(map(str, p.train.seeds))}; input {p.train.resolution} px for a model "
        f"at the baseline's resolution, scaled with each spec's resolution (multiple of "
        f"{p.train.resolution_multiple}).")
    if data:
        lines.append(
            f"- **Data**: {data.get('name')}: {data.get('train'):,} training images, "
            f"{data.get('val'):,} validation images held out of the training set (split seed = "
            f"the model's seed), {data.get('test') or 0:,} test images; device "
            f"{(metrics or {}).get('device')}.")
    lines += ["- **Which accuracy is which**: validation accuracy made every choice (the best "
              "child, the coefficients, each model's kept epoch). Test accuracy was scored "
              "once per trained model, with the kept weights, and chose nothing.", ""]

    # Results.
    lines += ["## Results", "", "![accuracy vs MACs](accuracy_vs_macs.png)", "",
              "| model | group | MACs | trained at | params (trained) | seed | status | best val "
              "(epoch) | test | minutes | spec | checkpoint |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        val = ("-" if r["best_val_accuracy"] is None
               else f"{r['best_val_accuracy']:.4f} ({r['best_epoch']}/{r['epochs_run']})")
        test = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
        minutes = "-" if r["seconds"] is None else f"{r['seconds'] / 60:.1f}"
        params = "-" if r["params"] is None else f"{r['params']:,}"
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        lines.append(f"| {r['model']} | {r['group']} | {format_macs(r['macs'])} | "
                     f"{r['train_resolution']} px | {params} | {r['seed']} | {status} | {val} | "
                     f"{test} | {minutes} | `{r['spec']}` | `{r['checkpoint'] or '-'}` |")
    lines.append("")
    base = next((m for m in models if m["group"] == "baseline"), None)
    lines += ["Per model over seeds (mean, range):", "",
              "| model | MACs | val | test | val vs baseline | test vs baseline |",
              "|---|---|---|---|---|---|"]
    for m in models:
        vs_val = vs_test = "-"
        if base is not None and m is not base:
            vs_val, vs_test = compare_to(m["val"], base["val"]), compare_to(m["test"], base["test"])
        lines.append(f"| {m['model']} | {format_macs(m['macs'])} | {_fmt(m['val'])} | "
                     f"{_fmt(m['test'])} | {vs_val} | {vs_test} |")
    lines += ["", f"A difference is called one only with at least {MIN_SEEDS_FOR_A_CLAIM} seeds "
              "per model and ranges that do not overlap.", ""]

    if compare:
        lines += ["## Single-dimension scalings (proxy training, `scale.compare`)", "",
                  "One proxy run each (the grid's proxy), at about the compound phi=1 model's "
                  "MACs; these models were not trained fully and have no checkpoint.", "",
                  "| model | MACs | proxy resolution | proxy val accuracy | spec |",
                  "|---|---|---|---|---|"]
        for c in compare:
            acc = "failed" if c["accuracy"] is None else f"{c['accuracy']:.4f}"
            macs = "-" if c["macs"] is None else format_macs(c["macs"])
            lines.append(f"| {c['label']} | {macs} | {c['proxy_resolution']} px | {acc} | "
                         f"`{c['spec']}` |")
        lines.append("")
    lines += ["Files: `results.csv` (one row per model and seed), `report.json` (everything "
              "above as data), each model's `metrics.json`, `train.csv` and TensorBoard events "
              "in its `train/` folder.", ""]
    return "\n".join(lines)


def _recheck_line(scale: Mapping[str, Any]) -> str | None:
    path = scale.get("coefficients_from")
    if not path or not str(path).endswith("scaling.yaml") or not Path(path).is_file():
        return None
    record = scaler.load_scaling(path)
    return None if record.recheck is None else record.recheck.explain()

