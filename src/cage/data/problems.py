"""Problems found in a user's copy of a dataset: collected while preparing, counted, and written to a report.

Every example that is dropped, and every label or box that is changed (a box clamped to the image), gets
one [`Problem`]. Worker processes of ``datasets`` append their problems to their own JSON-lines file in a
scratch folder; [`ProblemLog.merge`] reads them back at the end, so nothing a worker sees is lost.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

# The kinds of problem, as written in the report's ``kind`` field.
MISSING_IMAGE = "missing_image"  # the annotation names an image file that does not exist
UNREADABLE_IMAGE = "unreadable_image"  # the file exists but does not decode (corrupt or truncated)
LABEL_OUT_OF_RANGE = "label_out_of_range"  # expression not a training class, valence -2, V/A/D off scale, ...
NAN_LABEL = "nan_label"  # a label is NaN (EMOTIC has persons without continuous labels)
BOX_OUTSIDE_IMAGE = "box_outside_image"  # the box leaves the image; clamped to it, example kept
EMPTY_BOX = "empty_box"  # the box (after clamping) has no area; example dropped
BAD_ANNOTATION = "bad_annotation"  # a row or annotation file that cannot be parsed, or is missing
IMAGE_SIZE_MISMATCH = "image_size_mismatch"  # the annotated image size differs from the decoded image
EXCLUDED_CLASS = "excluded_class"  # a valid class left out by design (Contempt in AffectNet-7)
NO_CONSENSUS = "no_consensus"  # FER+: the annotators' votes pass neither label mode of the FER+ protocol
NOT_A_FACE = "not_a_face"  # FER+: most annotators voted unknown or not-a-face

KINDS = (
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    LABEL_OUT_OF_RANGE,
    NAN_LABEL,
    BOX_OUTSIDE_IMAGE,
    EMPTY_BOX,
    BAD_ANNOTATION,
    IMAGE_SIZE_MISMATCH,
    EXCLUDED_CLASS,
    NO_CONSENSUS,
    NOT_A_FACE,
)

DROPPED = "dropped"
CLAMPED = "clamped"
KEPT = "kept"


@dataclass(frozen=True)
class Problem:
    """One problem with one example of the user's copy.

    Attributes:
        split: the output split the example was meant for (``train``, ``test``, ...).
        file: the file the problem is in: the image, or the annotation file for label problems.
        kind: one of [`KINDS`].
        detail: a sentence saying what exactly is wrong (the bad value, the box, the decoder's error).
        action: ``"dropped"`` (the example is not in the output), ``"clamped"`` or ``"kept"``.
        source_id: the example's id in the source (AffectNet path, EMOTIC image and person index).
    """

    split: str
    file: str
    kind: str
    detail: str
    action: str = DROPPED
    source_id: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class ProblemLog:
    """Collects [`Problem`]s in memory (main process) or appends them to a JSON-lines file (workers)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.problems: list[Problem] = []
        self._handle = None

    @classmethod
    def for_worker(cls, folder: str | Path) -> ProblemLog:
        """A log writing to a new, uniquely named ``*.jsonl`` file in ``folder`` (one per generator call)."""
        return cls(Path(folder) / f"problems-{uuid.uuid4().hex}.jsonl")

    def add(self, problem: Problem) -> None:
        if self.path is None:
            self.problems.append(problem)
            return
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(problem.to_dict()) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def merge(self, folder: str | Path) -> None:
        """Read back every worker file in ``folder`` into this (in-memory) log."""
        for path in sorted(Path(folder).glob("problems-*.jsonl")):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        self.problems.append(Problem(**json.loads(line)))

    def counts(self) -> dict[str, int]:
        """Number of problems per kind (only kinds that occurred), in [`KINDS`] order."""
        counter = Counter(problem.kind for problem in self.problems)
        return {kind: counter[kind] for kind in KINDS if counter[kind]}

    def dropped(self) -> int:
        return sum(problem.action == DROPPED for problem in self.problems)

    def write(self, path: str | Path) -> Path:
        """Write every problem as one JSON object per line, sorted by split, file and kind."""
        path = Path(path)
        ordered = sorted(self.problems, key=lambda p: (p.split, p.file, p.source_id, p.kind))
        with open(path, "w", encoding="utf-8") as handle:
            for problem in ordered:
                handle.write(json.dumps(problem.to_dict()) + "\n")
        return path

    def summary(self, examples: dict[str, int] | None = None) -> str:
        """A few human-readable lines: examples written per split, problems per kind, examples dropped."""
        lines = []
        if examples:
            lines.append("examples: " + ", ".join(f"{split} {count}" for split, count in examples.items()))
        counts = self.counts()
        if not counts:
            lines.append("problems: none")
        else:
            lines.append(f"problems: {len(self.problems)} ({self.dropped()} examples dropped)")
            for kind, count in counts.items():
                actions = Counter(p.action for p in self.problems if p.kind == kind)
                lines.append(f"  {kind}: {count} (" + ", ".join(f"{a} {n}" for a, n in sorted(actions.items())) + ")")
        return "\n".join(lines)


def read_report(path: str | Path) -> list[dict[str, str]]:
    """Read a problem report written by [`ProblemLog.write`] (one dict per problem)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
