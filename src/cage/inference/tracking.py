"""Face tracks through videos: a ``track_id`` on every face record of a video, a per-track summary closing the
video's output, and optional plots (valence/arousal over time, the path on the circumplex).

Association is frame to frame by box overlap: the intersection over union (IoU) between each live track's
predicted box (its last box moved by its recent velocity, so a moving face is found again after a gap) and
each new detection, solved as an assignment problem with the Hungarian method
(``scipy.optimize.linear_sum_assignment``, Kuhn 1955 / Munkres 1957), keeping pairs with IoU >= a threshold.
This is the association step of SORT (Bewley et al., 2016, arXiv 1602.00763) without its Kalman filter.
A track survives ``max_missed`` sampled frames without a detection; a face seen after that gets a new id.
Everything held per video is a few numbers per track (running means and variances, Welford 1962), so memory
does not grow with the video's length; only ``--plot`` keeps each track's (time, valence, arousal) points
(12 bytes per face and frame).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IoUTracker", "TrackSummary", "box_iou", "plot_tracks", "track_results"]


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of ``(N, 4)`` and ``(M, 4)`` boxes ``(x, y, w, h)`` in pixels.

    Returns:
        ``(N, M)`` float array in [0, 1]; 0 where boxes do not overlap or have no area.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    width = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0][:, None], b[:, 0][None]), 0, None)
    height = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1][:, None], b[:, 1][None]), 0, None)
    inter = width * height
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # (4,) x, y, w, h of the last detection
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (dx, dy) pixels per sampled frame
    missed: int = 0  # sampled frames since the last detection

    def predicted(self) -> np.ndarray:
        box = self.box.copy()
        box[:2] += self.velocity * (self.missed + 1)
        return box


class IoUTracker:
    """Assigns stable ids to the boxes of consecutive (sampled) frames of one video.

    Args:
        iou_threshold: the least IoU between a track's predicted box and a detection for them to be matched.
        max_missed: how many consecutive sampled frames a track may go undetected and still be continued.

    Call [`update`] once per frame, in order, with that frame's boxes; ids start at 0 and are never reused.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5):
        if not 0 < iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        self.iou_threshold, self.max_missed = float(iou_threshold), int(max_missed)
        self.tracks: list[_Track] = []
        self.next_id = 0

    def update(self, boxes: Sequence[Sequence[float]]) -> list[int]:
        """Match this frame's ``(x, y, w, h)`` boxes to the live tracks; returns one track id per box, in order."""
        from scipy.optimize import linear_sum_assignment

        detections = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids = [-1] * len(detections)
        matched_tracks: set[int] = set()
        if self.tracks and len(detections):
            iou = box_iou(np.stack([t.predicted() for t in self.tracks]), detections)
            rows, cols = linear_sum_assignment(-iou)
            for row, col in zip(rows, cols):
                if iou[row, col] >= self.iou_threshold:
                    track = self.tracks[row]
                    step = np.asarray(detections[col][:2] - track.box[:2]) / (track.missed + 1)
                    track.velocity = step if not track.velocity.any() else 0.5 * track.velocity + 0.5 * step
                    track.box, track.missed = detections[col].copy(), 0
                    ids[col] = track.track_id
                    matched_tracks.add(row)
        for index, track in enumerate(self.tracks):
            if index not in matched_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for col, box in enumerate(detections):
            if ids[col] < 0:
                self.tracks.append(_Track(self.next_id, box.copy()))
                ids[col] = self.next_id
                self.next_id += 1
        return ids


class _TrackStats:
    """Running statistics of one track (Welford's online mean and variance)."""

    def __init__(self, targets: Sequence[str], keep_points: bool):
        self.frames = 0
        self.first_frame = self.last_frame = None
        self.first_time = self.last_time = None
        self.count = {t: 0 for t in targets}
        self.mean = {t: 0.0 for t in targets}
        self.m2 = {t: 0.0 for t in targets}
        self.expressions: dict[str, int] = {}
        self.points = {name: array("f") for name in ("time_s", *targets)} if keep_points else None

    def add(self, frame: int | None, time_s: float | None, face: dict[str, Any]) -> None:
        self.frames += 1
        if self.first_frame is None:
            self.first_frame, self.first_time = frame, time_s
        self.last_frame, self.last_time = frame, time_s
        for target in self.count:
            value = face.get(target)
            if value is None or not math.isfinite(value):
                continue
            self.count[target] += 1
            delta = value - self.mean[target]
            self.mean[target] += delta / self.count[target]
            self.m2[target] += delta * (value - self.mean[target])
        expression = face.get("expression")
        if expression is not None:
            self.expressions[expression] = self.expressions.get(expression, 0) + 1
        if self.points is not None:
            self.points["time_s"].append(float(time_s if time_s is not None else frame or 0))
            for target in self.count:
                self.points[target].append(float(face.get(target, math.nan)))

    def to_dict(self, track_id: int, labels: Sequence[str]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "track_id": track_id,
            "frames": self.frames,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "first_time_s": self.first_time,
            "last_time_s": self.last_time,
        }
        for target in self.count:
            n = self.count[target]
            record[f"{target}_mean"] = round(self.mean[target], 6) if n else None
            record[f"{target}_std"] = round(math.sqrt(self.m2[target] / n), 6) if n else None
        total = sum(self.expressions.values())
        names = list(labels) or sorted(self.expressions)
        record["expression_shares"] = {n: round(self.expressions.get(n, 0) / total, 6) if total else 0.0 for n in names}
        return record


@dataclass
class TrackSummary:
    """The per-track summary that closes a video's output.

    Attributes:
        file: the video, as in its frame records.
        tracks: one dict per track, in id order: ``track_id``, ``frames`` (sampled frames in which the track's
            face was detected), ``first_frame``/``last_frame`` and ``first_time_s``/``last_time_s``,
            ``<target>_mean`` and ``<target>_std`` (population standard deviation) for each regression target
            (valence, arousal[, dominance]; in [-1, 1]), ``expression_shares`` (label -> share of the track's
            frames predicted as that expression, in ``id2label`` order; sums to 1).
    """

    file: str
    tracks: list[dict[str, Any]]
    error: None = None  # a summary is never an error; lets writers treat it like a result

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "track_summary": self.tracks}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TrackSummary:
        return cls(file=record["file"], tracks=list(record["track_summary"]))


class _VideoTracks:
    def __init__(self, file: str, labels: Sequence[str], targets: Sequence[str], keep_points: bool, **tracker):
        self.file, self.labels, self.targets, self.keep_points = file, labels, targets, keep_points
        self.tracker = IoUTracker(**tracker)
        self.stats: dict[int, _TrackStats] = {}

    def add(self, result: Any) -> None:
        if result.error is not None:
            return  # a bad frame: the tracks are continued over it like over a missed detection
        ids = self.tracker.update([face["box"] for face in result.faces])
        for face, track_id in zip(result.faces, ids):
            face["track_id"] = track_id
            if track_id not in self.stats:
                self.stats[track_id] = _TrackStats(self.targets, self.keep_points)
            self.stats[track_id].add(result.frame, result.time_s, face)

    def summary(self) -> TrackSummary:
        return TrackSummary(self.file, [self.stats[i].to_dict(i, self.labels) for i in sorted(self.stats)])


def track_results(
    pairs: Iterable[tuple[Any, Any]],
    config: Any,
    plot_dir: str | Path | None = None,
    iou_threshold: float = 0.3,
    max_missed: int = 5,
) -> Iterator[tuple[Any, Any]]:
    """Add ``track_id`` to the face records of video frames and close each video with a [`TrackSummary`].

    Args:
        pairs: ``(ImageResult, image or None)`` in input order, as ``predict.iter_input_results`` yields them;
            results with a ``frame`` are video frames, consecutive frames of one file form one video.
        config: the model config (``id2label``, ``regression_targets``).
        plot_dir: where to write each video's plots (see [`plot_tracks`]); ``None``: no plots.
        iou_threshold, max_missed: see [`IoUTracker`].

    Yields:
        The same pairs (face records of frames gain ``track_id``), and after a video's last frame
        ``(TrackSummary, None)``. Images pass through unchanged.
    """
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    targets = list(config.regression_targets)
    current: _VideoTracks | None = None

    def close() -> Iterator[tuple[Any, Any]]:
        summary = current.summary()
        if plot_dir is not None:
            plot_tracks(current.file, current.stats, targets, plot_dir)
        yield summary, None

    for result, image in pairs:
        is_frame = getattr(result, "frame", None) is not None
        if current is not None and (not is_frame or result.file != current.file):
            yield from close()
            current = None
        if is_frame:
            if current is None:
                current = _VideoTracks(
                    result.file, labels, targets, plot_dir is not None, iou_threshold=iou_threshold,
                    max_missed=max_missed,
                )
            current.add(result)
        yield result, image
    if current is not None:
        yield from close()


def plot_tracks(file: str, stats: dict[int, _TrackStats], targets: Sequence[str], folder: str | Path) -> list[Path]:
    """Write ``<video stem>_timeline.png`` (each regression target over time, one line per track) and
    ``<video stem>_circumplex.png`` (each track's path in the valence-arousal plane, start marked with a circle,
    end with a cross) into ``folder``; returns their paths. Uses matplotlib's Agg backend (no display)."""
    from ..extras import require_extra

    require_extra("plots", "cage predict --plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(file).stem
    paths = [folder / f"{stem}_timeline.png", folder / f"{stem}_circumplex.png"]
    figure, axes = plt.subplots(len(targets), 1, figsize=(9, 2.4 * len(targets)), sharex=True, squeeze=False)
    for axis, target in zip(axes[:, 0], targets):
        for track_id, track in sorted(stats.items()):
            axis.plot(track.points["time_s"], track.points[target], lw=1, label=f"track {track_id}")
        axis.set_ylim(-1.05, 1.05)
        axis.axhline(0, color="grey", lw=0.5)
        axis.set_ylabel(target)
    axes[-1, 0].set_xlabel("time (s)")
    if stats:
        axes[0, 0].legend(loc="upper right", fontsize="small")
    axes[0, 0].set_title(Path(file).name)
    figure.tight_layout()
    figure.savefig(paths[0], dpi=100)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(5.5, 5.5))
    angle = np.linspace(0, 2 * np.pi, 200)
    axis.plot(np.cos(angle), np.sin(angle), color="grey", lw=0.5)
    axis.axhline(0, color="grey", lw=0.5)
    axis.axvline(0, color="grey", lw=0.5)
    if "valence" in targets and "arousal" in targets:
        for track_id, track in sorted(stats.items()):
            v, a = np.asarray(track.points["valence"]), np.asarray(track.points["arousal"])
            (line,) = axis.plot(v, a, lw=1, alpha=0.8, label=f"track {track_id}")
            if len(v):
                axis.plot(v[0], a[0], "o", color=line.get_color())
                axis.plot(v[-1], a[-1], "x", color=line.get_color())
    axis.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence", ylabel="arousal", title=Path(file).name)
    axis.set_aspect("equal")
    if stats:
        axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(paths[1], dpi=100)
    plt.close(figure)
    return paths
