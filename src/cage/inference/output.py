"""Writing results: JSON (streamed array), JSON Lines (one record per image or frame), CSV (one row per face),
and annotated images (boxes, label, valence/arousal bars)."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from PIL import Image, ImageDraw, ImageFont

from .predict import ImageResult

FORMATS = ("json", "jsonl", "csv")


class RunCounts:
    """What a ``cage predict`` run processed, counted result by result, and its summary line.

    ``images`` counts the image results and ``frames`` the video-frame results (a record with a ``frame``),
    failed or not (a video lost as a whole counts in ``failures`` only); ``failures`` the results with an error (an unreadable file, a lost frame), ``faces`` the faces
    found and ``failed_faces`` those without a prediction (non-finite model output).
    """

    def __init__(self) -> None:
        self.images = self.frames = self.faces = self.failures = self.failed_faces = 0

    def add(self, result: ImageResult) -> None:
        if result.frame is not None:
            self.frames += 1
        elif not (result.error and _is_video(result.file)):  # a whole video lost is counted in `failures` only
            self.images += 1
        if result.error:
            self.failures += 1
            return
        self.faces += len(result.faces)
        self.failed_faces += sum(1 for face in result.faces if face.get("error"))

    @property
    def failed(self) -> bool:
        """Whether anything was lost (exit code 1)."""
        return bool(self.failures or self.failed_faces)

    def summary(self, skipped: int, seconds: float, engine: str, detector: str, processes: int = 1) -> str:
        """The line that ends every run, e.g. ``cage predict: 3 images, 120 video frames, 7 faces, 0 failed,
        0 faces without a prediction, 1 skipped, 2.4 s; openvino fp32, fast start; detector yunet``."""
        parts = [_count(self.images, "image")] if self.images or not self.frames else []
        inputs = ", ".join(parts + ([_count(self.frames, "video frame")] if self.frames else []))
        running = f", {processes} processes" if processes > 1 else ""
        return (
            f"cage predict: {inputs}, {_count(self.faces, 'face')}, {self.failures} failed, "
            f"{_count(self.failed_faces, 'face')} without a prediction, {skipped} skipped, {seconds:.1f} s{running}; "
            f"{engine}; detector {detector}"
        )


def _is_video(name: str) -> bool:
    from .sources import kind_of

    return kind_of(Path(name)) == "video"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


class ResultWriter:
    """Writes results to ``stream`` as they come; call ``close()`` at the end (JSON needs its closing bracket).

    Formats:
        ``json``: one JSON array of per-image records ``{"file", ["frame", "time_s"], "faces", ["error"]}``,
            written record by record (nothing is held back).
        ``jsonl``: the same records, one per line, flushed per line.
        ``csv``: one row per face, columns ``file, frame, time_s, face, x, y, w, h, score, crop, box_source,
            expression, <regression targets>, [categories], p_<label>..., error``; an image without a face
            or with an error gets one row with the face columns empty, so every input appears. A face without
            a prediction (non-finite model output) has empty value cells and its own ``error``.

            With ``tracks=True`` (inputs include videos) a ``track_id`` column follows ``face``, and each
            video ends with one ``face=summary`` row per track (see ``tracking.TrackSummary``).

    Every format refuses NaN and infinities (``ValueError``) instead of writing them: JSON output is strict
    JSON (``allow_nan=False``) and CSV cells never hold ``nan``/``inf``. Records carry ``None`` (JSON ``null``,
    an empty CSV cell) plus an ``error`` where a value is missing. File names that are not valid UTF-8 (on
    POSIX, undecodable bytes appear as surrogate escapes) are written with those bytes as ``\\xNN`` escapes
    (Python's ``backslashreplace``), so a name never stops the output.
    """

    def __init__(self, stream: TextIO, fmt: str, config: Any, tracks: bool = False):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.stream, self.format, self.count, self.tracks = stream, fmt, 0, tracks
        self.labels = [config.id2label[i] for i in range(len(config.id2label))]
        self.targets = list(config.regression_targets)
        self.multi_label = bool(config.multi_label)
        if fmt == "csv":
            columns = ["file", "frame", "time_s", "face", "x", "y", "w", "h", "score", "crop", "box_source"]
            columns += ["expression", *self.targets] + (["categories"] if self.multi_label else [])
            columns += [f"p_{label}" for label in self.labels] + ["error"]
            if tracks:  # videos: the face's track, and the per-track summary rows (see tracking.py)
                columns.insert(columns.index("face") + 1, "track_id")
                columns += ["frames", *(f"{t}_std" for t in self.targets)]
            self._csv = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
            self._csv.writeheader()

    def write(self, result: ImageResult) -> None:
        """Write one result.

        Raises:
            ValueError: a value is NaN or infinite (the records of ``cage`` never hold one; see
                ``face_analysis_cage.outputs_to_records``).
        """
        record = result.to_dict()
        record["file"] = printable_name(record["file"])
        if "error" in record:
            record["error"] = printable_name(record["error"])
        if self.format == "jsonl":
            self.stream.write(json.dumps(record, allow_nan=False) + "\n")
            self.stream.flush()
        elif self.format == "json":
            text = "\n".join("  " + line for line in json.dumps(record, indent=2, allow_nan=False).splitlines())
            self.stream.write(("[\n" if self.count == 0 else ",\n") + text)
        else:
            self._write_csv(result)
        self.count += 1

    def _write_csv(self, result: ImageResult) -> None:
        if hasattr(result, "tracks"):  # a TrackSummary: one row per track, face column "summary"
            self._write_csv_summary(result)
            return
        error = None if result.error is None else printable_name(result.error)
        base = {"file": printable_name(result.file), "frame": result.frame, "time_s": result.time_s, "error": error}
        if not result.faces:
            self._csv_row(base)
            return
        for index, face in enumerate(result.faces):
            row = dict(base, face=index, score=face["score"], crop=face["crop"], box_source=face["box_source"])
            row.update(zip("xywh", face["box"]))
            row["expression"] = face["expression"]
            if self.tracks:
                row["track_id"] = face.get("track_id")
            row.update({t: face[t] for t in self.targets})
            if self.multi_label:
                row["categories"] = ";".join(face["categories"])
            row.update({f"p_{label}": p for label, p in face["probabilities"].items()})
            if face.get("error"):
                row["error"] = face["error"] if error is None else f"{error}; {face['error']}"
            self._csv_row(row)

    def _csv_row(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"refusing to write the non-finite value {value} in CSV column {key!r}")
        self._csv.writerow(row)

    def _write_csv_summary(self, summary: Any) -> None:
        """Per track: ``expression`` = its most frequent expression, ``<target>`` = mean, ``<target>_std``,
        ``p_<label>`` = share of its frames with that expression, ``frames`` = frames seen."""
        if not self.tracks:
            raise ValueError("a track summary needs a writer made with tracks=True")
        for track in summary.tracks:
            shares = track["expression_shares"]
            row = {"file": printable_name(summary.file), "face": "summary", "track_id": track["track_id"]}
            row["frames"] = track["frames"]
            row["expression"] = max(shares, key=shares.get) if track["frames"] else None
            row.update({t: track[f"{t}_mean"] for t in self.targets})
            row.update({f"{t}_std": track[f"{t}_std"] for t in self.targets})
            row.update({f"p_{label}": shares.get(label) for label in self.labels})
            self._csv_row(row)

    def close(self) -> None:
        if self.format == "json":
            self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        self.stream.flush()


def printable_name(text: str) -> str:
    """``text`` made encodable as UTF-8: undecodable file-name bytes (surrogate escapes, as ``os.fsdecode``
    gives them on POSIX) become ``\\xNN`` escapes; valid text is returned unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def _bar(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, height: int, value: float, name: str, font) -> None:
    """A horizontal bar centred on zero for ``value`` in [-1, 1]: green right of centre, red left."""
    draw.rectangle((x, y, x + width, y + height), fill=(40, 40, 40))
    centre = x + width // 2
    end = centre + round(value * width / 2)
    draw.rectangle(
        (min(centre, end), y, max(centre, end), y + height), fill=(60, 200, 80) if value >= 0 else (220, 60, 60)
    )
    draw.line((centre, y, centre, y + height), fill=(255, 255, 255))
    draw.text((x + 2, y), f"{name[0].upper()} {value:+.2f}", fill=(255, 255, 255), font=font)


def has_prediction(face: dict[str, Any]) -> bool:
    """Whether a face record carries a prediction: ``False`` for a face whose model output was not finite
    (``error`` set, values ``None``; see ``face_analysis_cage.outputs_to_records``) or without an ``expression``."""
    return not face.get("error") and face.get("expression") is not None


def annotate(
    image: Image.Image,
    faces: list[dict[str, Any]],
    colours: Sequence[str | tuple[int, int, int]] | None = None,
    numbered: bool = False,
) -> Image.Image:
    """A copy of ``image`` (converted to RGB) with each face's box, expression label and valence/arousal bars.

    Args:
        image: the EXIF-upright image the boxes refer to.
        faces: face records: ``box`` ``[x, y, w, h]`` in pixels of ``image``; ``expression`` and its
            ``probabilities`` (the label shows the probability where given); ``valence``/``arousal``/``dominance``
            in [-1, 1] as bars where not ``None``; ``error``: a face without a prediction ("no prediction").
        colours: one PIL colour per face (``"#RRGGBB"``, a name or an RGB tuple) for its box and label
            background; default yellow boxes with black labels.
        numbered: prefix each label with the face's 1-based position in ``faces`` (``"1 Happy 0.93"``).
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    thickness = max(2, round(max(out.size) / 400))
    size = max(12, round(max(out.size) / 60))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for index, face in enumerate(faces):
        x, y, w, h = face["box"]
        colour = colours[index] if colours else (255, 200, 0)
        if not has_prediction(face):
            label = "no prediction" if face.get("error") else ""
        else:
            probability = (face.get("probabilities") or {}).get(face["expression"])
            label = face["expression"] + ("" if probability is None else f" {probability:.2f}")
        label = f"{index + 1} {label}".strip() if numbered else label
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=thickness)
        text_y = max(0, y - size - 4)
        text_right = draw.textbbox((x + 3, text_y + 1), label, font=font)[2] + 3 if label else x
        draw.rectangle((x, text_y, max(x + w, text_right), text_y + size + 4), fill=colour if colours else (0, 0, 0))
        draw.text((x + 3, text_y + 1), label, fill=(255, 255, 255), font=font)
        bar_height, bar_y = size + 2, y + h + 2
        for name in ("valence", "arousal", "dominance"):
            if face.get(name) is not None:
                _bar(
                    draw,
                    x,
                    min(bar_y, out.height - bar_height - 1),
                    max(w, 8 * size),
                    bar_height,
                    face[name],
                    name,
                    font,
                )
                bar_y += bar_height + 2
    return out


class Annotator:
    """Saves annotated copies of the inputs under ``folder``: ``<name>.jpg`` for images (relative paths of
    folder inputs kept), ``<name>_f<frame>.jpg`` for video frames; clashing names get a numeric suffix."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._used: set[Path] = set()

    def save(self, result: ImageResult, image: Image.Image, relative_to: Path | None = None) -> Path:
        source = Path(result.file)
        try:
            relative = source.relative_to(relative_to) if relative_to is not None else Path(source.name)
        except ValueError:
            relative = Path(source.name)
        stem = relative.with_suffix("")
        if result.frame is not None:
            stem = stem.with_name(f"{stem.name}_f{result.frame:06d}")
        target = self.folder / stem.with_suffix(".jpg")
        counter = 1
        while target in self._used:
            target = self.folder / stem.with_name(f"{stem.name}-{counter}").with_suffix(".jpg")
            counter += 1
        self._used.add(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        annotate(image, result.faces).save(target, quality=90)
        return target


__all__ = ["FORMATS", "Annotator", "ResultWriter", "annotate", "has_prediction", "printable_name"]
