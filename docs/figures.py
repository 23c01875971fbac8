"""Draw docs/pipeline-fmnist.png from the numbers on docs/results/baseline-15-epochs.md and
docs/results/pipeline.md (the pipeline's run folders are not kept in the repository):

    .venv/bin/python docs/figures.py

Left: validation accuracy against MACs after 15 epochs; a bar spans the lowest to the highest
of three seeds, a hollow marker without a bar is one seed. Right: the scale stage's
`--compare`, proxy validation accuracy, one run each.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

# model: (MACs in millions at the spec's resolution, seeds' mean, lowest, highest, seeds)
TRAINED = {
    "searched baseline": (149.3, 0.8814, 0.8720, 0.8920, 3),
    "600M member": (584.0, 0.9042, 0.9042, 0.9042, 1),
    "1.2G member": (1200.0, 0.9146, 0.9146, 0.9146, 1),
    "EfficientNet-B0": (385.8, 0.8548, 0.8468, 0.8630, 3),
}
# --compare: proxy validation accuracy, one run each (the scalings at about 343M MACs)
COMPARE = {"baseline (149.3M)": 0.7968, "width only": 0.7956, "depth only": 0.6456,
           "resolution only": 0.8280, "compound": 0.8306}


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8),
                                  gridspec_kw={"width_ratios": [1.35, 1]})
    colors = {"searched baseline": "tab:red", "600M member": "tab:blue",
              "1.2G member": "tab:blue", "EfficientNet-B0": "tab:gray"}
    for name, (macs, mean, low, high, seeds) in TRAINED.items():
        if seeds > 1:
            ax.errorbar(macs, mean, yerr=[[mean - low], [high - mean]], fmt="o", capsize=4,
                        color=colors[name], markersize=8, zorder=3)
        else:
            ax.plot(macs, mean, "o", mfc="white", color=colors[name], markersize=8, zorder=3)
        ax.annotate(f"{name}\n{mean:.4f} ({seeds} seed{'s' if seeds > 1 else ''})",
                    (macs, mean), textcoords="offset points", xytext=(8, -4), fontsize=8)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlim(110, 2600)
    ax.set_xlabel("MACs (millions; spec resolution, 1000 classes)")
    ax.set_ylabel("validation accuracy after 15 epochs (width x0.5)")
    ax.set_title("trained models: bar = range over 3 seeds; hollow = 1 seed", fontsize=10)
    ax.grid(True, alpha=0.3)

    names = list(COMPARE)
    ax2.barh(names, [COMPARE[n] for n in names],
             color=["tab:red", "tab:orange", "tab:green", "tab:purple", "tab:blue"])
    for i, n in enumerate(names):
        ax2.text(COMPARE[n] + 0.003, i, f"{COMPARE[n]:.4f}", va="center", fontsize=8)
    ax2.set_xlim(0.6, 0.86)
    ax2.invert_yaxis()
    ax2.set_xlabel("proxy validation accuracy (one run each)")
    ax2.set_title("--compare: scalings at about 343M MACs (proxy)", fontsize=10)
    ax2.grid(True, axis="x", alpha=0.3)
    fig.suptitle("effnas pipeline on Fashion-MNIST: search, scale, train (15 epochs)")
    fig.tight_layout()
    fig.savefig(HERE / "pipeline-fmnist.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
