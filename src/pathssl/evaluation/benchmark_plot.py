"""The visible benchmark as one small PNG: balanced accuracy and 95 % interval per encoder,
per task and for the mean over tasks (matplotlib, from requirements-train.txt)."""

from __future__ import annotations

from pathlib import Path

from pathssl.errors import PathsslError


def write_plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PathsslError(
            f"{path}: plotting needs matplotlib (pip install -r requirements-train.txt)"
        ) from exc
    rows = {**results["tasks"], "mean over tasks": results["mean"]}
    names = list(results["encoders"])
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(rows)), dpi=100)
    for j, name in enumerate(names):
        offset = (j - (len(names) - 1) / 2) * 0.22
        for i, row in enumerate(rows.values()):
            r = row["encoders"][name]
            lo, hi = r["interval_95"]
            ba = r["balanced_accuracy"]
            ax.errorbar(
                ba,
                i + offset,
                xerr=[[ba - lo], [hi - ba]],
                fmt="o",
                ms=4,
                color=f"C{j}",
                capsize=2,
                label=name if i == 0 else None,
            )
    ax.set_yticks(range(len(rows)), list(rows))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("balanced accuracy (95 % group-bootstrap interval)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
