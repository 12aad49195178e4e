"""Figures of an evaluation (matplotlib, Agg backend, PNG files; matplotlib comes with the ``plots`` extra).

- ``confusion_matrix.png``: row-normalised confusion matrix (true rows, predicted columns), counts annotated.
- ``circumplex.png``: predicted and true (valence, arousal) on Russell's circumplex, [-1, 1] squared.
- [`circumplex_figure`]: the same plane with quadrant names and reference points, for live displays (the Space).
- ``error_cdf.png``: share of predictions within an absolute error, per regression target (the paper's
  cumulative error figure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    from ..extras import require_extra

    require_extra("plots", "evaluation plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: np.ndarray, labels: list[str], path: Path) -> Path:
    """``matrix[true][predicted]`` counts -> a row-normalised heat map with counts."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(labels), 1 + 0.6 * len(labels)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(matrix[i, j])}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_circumplex(prediction: np.ndarray, target: np.ndarray, path: Path, target_name: str = "true") -> Path:
    """``(n, 2)`` predicted and target (valence, arousal) as points on the circumplex, with the unit circle;
    ``target_name`` labels the targets (``"derived"`` for FER+'s targets, which are not human ratings)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.6", linestyle="--"))
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.scatter(target[:, 0], target[:, 1], s=8, alpha=0.5, label=target_name, color="tab:blue")
    ax.scatter(prediction[:, 0], prediction[:, 1], s=8, alpha=0.5, label="predicted", color="tab:orange")
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# Quadrants of the valence/arousal plane (Russell 1980): (x, y) of their names in data coordinates.
QUADRANTS = {"pleasant\nactivated": (0.72, 1.02), "unpleasant\nactivated": (-0.72, 1.02),
             "unpleasant\ncalm": (-0.72, -1.02), "pleasant\ncalm": (0.72, -1.02)}  # fmt: skip
# Where a reference point's name goes: (x, y) offset in points and horizontal alignment; others go right-below.
# Tuned for the AffectNet-8 medians, whose Contempt, Disgust and Fear would otherwise overlap their neighbours.
REFERENCE_LABEL_PLACES = {"Contempt": ((-6, 4), "right"), "Disgust": ((-6, -10), "right"), "Fear": ((-6, 4), "right")}


def circumplex_figure(
    points: list[tuple[float, float, str, str]],
    trace: list[tuple[float, float]] | None = None,
    reference_points: dict[str, tuple[float, float]] | None = None,
    trace_colour: str = "#D55E00",
) -> Any:
    """Russell's circumplex as a matplotlib ``Figure`` (no pyplot state: safe in server threads): valence on x,
    arousal on y, the unit circle, quadrant names, grey labelled reference points, one filled marker per point
    and an optional trace (oldest first, faded).

    Args:
        points: ``(valence, arousal, colour, label)`` per marker, valence and arousal in [-1, 1].
        trace: earlier ``(valence, arousal)`` values, oldest first, drawn in ``trace_colour``.
        reference_points: name -> ``(valence, arousal)``, e.g. ``hub.paper_results.AFFECTNET_CLASS_MEDIANS``.

    Returns:
        The figure; its one axes holds, in order, the circle line, then a scatter per reference point, the trace
        (if any), and a scatter per point.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2, 5.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    angles = np.linspace(0, 2 * np.pi, 257)
    axes.plot(np.cos(angles), np.sin(angles), color="0.6", linewidth=1)
    axes.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    axes.axvline(0, color="0.8", linewidth=0.8, zorder=0)
    for text, (x, y) in QUADRANTS.items():
        axes.text(x, y, text, ha="center", va="center", fontsize=8, color="0.45", style="italic")
    for name, (valence, arousal) in (reference_points or {}).items():
        axes.scatter([valence], [arousal], s=22, color="0.55", marker="D", zorder=2)
        offset, align = REFERENCE_LABEL_PLACES.get(name, ((5, -10), "left"))
        axes.annotate(name, (valence, arousal), xytext=offset, textcoords="offset points", ha=align, fontsize=8,
                      color="0.4")  # fmt: skip
    if trace and len(trace) > 1:
        xs, ys = zip(*trace)
        axes.plot(xs, ys, color=trace_colour, alpha=0.5, linewidth=2, zorder=3)
        axes.scatter(xs[:-1], ys[:-1], s=10, color=trace_colour, alpha=0.35, zorder=3)
    for valence, arousal, colour, label in points:
        axes.scatter([valence], [arousal], s=140, color=colour, edgecolors="white", linewidths=1.5, zorder=4)
        axes.annotate(label, (valence, arousal), xytext=(7, 6), textcoords="offset points", fontsize=11,
                      fontweight="bold", color=colour, zorder=5)  # fmt: skip
    axes.set(xlim=(-1.15, 1.15), ylim=(-1.15, 1.15), aspect="equal", xlabel="valence (unpleasant \u2192 pleasant)",
             ylabel="arousal (calm \u2192 activated)")  # fmt: skip
    axes.set_title("Circumplex of affect", fontsize=11)
    return figure


def plot_error_cdf(prediction: np.ndarray, target: np.ndarray, names: list[str], path: Path) -> Path:
    """Share of examples whose absolute error is at most t, for t in [0, 2], one curve per target."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    thresholds = np.linspace(0, 2, 201)
    for column, name in enumerate(names):
        errors = np.abs(prediction[:, column] - target[:, column])
        ax.plot(thresholds, [(errors <= t).mean() for t in thresholds], label=name)
    ax.set_xlabel("absolute error")
    ax.set_ylabel("share of predictions within error")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_all(predictions: dict[str, np.ndarray], config: Any, output_dir: str | Path) -> list[Path]:
    """Write the figures of gathered ``predictions`` (see ``runner.predict_split``) to ``output_dir``."""
    from sklearn.metrics import confusion_matrix

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    targets = list(config.regression_targets)
    if not config.multi_label:
        labels = [config.id2label[i] for i in range(config.num_labels)]
        labelled = predictions["labels"] >= 0  # -1: no class (FER+ faces without a majority)
        matrix = confusion_matrix(
            predictions["labels"][labelled], predictions["logits"][labelled].argmax(axis=1), labels=range(len(labels))
        )
        written.append(plot_confusion_matrix(matrix, labels, output_dir / "confusion_matrix.png"))
    if "valence" in targets and "arousal" in targets:
        columns = [targets.index("valence"), targets.index("arousal")]
        written.append(
            plot_circumplex(
                predictions["regression"][:, columns],
                predictions["regression_labels"][:, columns],
                output_dir / "circumplex.png",
                "derived (not human ratings)" if getattr(config, "regression_source", "") == "derived" else "true",
            )
        )
    written.append(
        plot_error_cdf(
            predictions["regression"], predictions["regression_labels"], targets, output_dir / "error_cdf.png"
        )
    )
    return written
