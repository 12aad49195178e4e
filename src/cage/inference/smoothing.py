"""Smoothing valence/arousal over time, for live streams (webcam) and videos: an exponential moving average
over irregularly spaced frames, with a short trace of the smoothed values."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .output import has_prediction


@dataclass
class AffectSmoother:
    """Exponential moving average of (valence, arousal) over irregularly spaced frames, plus a short trace.

    The weight of a new frame is ``1 - exp(-dt / time_constant_s)`` (``dt``: seconds since the previous face),
    the exact discretisation of a first-order low-pass filter, so the smoothing does not depend on the frame
    rate: two frames 0.5 s apart move the average as far as one frame 1 s later. After ``reset_after_s``
    without a face the average restarts from the next face.

    Attributes:
        time_constant_s: EMA time constant in seconds (larger = smoother, slower).
        trace_s: seconds of smoothed values kept in ``trace``.
        reset_after_s: seconds without a face after which the state is cleared.
        value: the smoothed (valence, arousal), each in [-1, 1] when the inputs are; ``None`` before a face.
        trace: ``(time_s, valence, arousal)`` of the last ``trace_s`` seconds, oldest first.
    """

    time_constant_s: float = 1.0
    trace_s: float = 5.0
    reset_after_s: float = 2.0
    value: tuple[float, float] | None = None
    last_seen: float | None = None
    trace: deque = field(default_factory=deque)

    def update(self, now: float, valence: float, arousal: float) -> tuple[float, float]:
        """Fold in a face seen at time ``now`` (seconds, monotonic); returns the smoothed (valence, arousal)."""
        if self.value is None or self.last_seen is None or now - self.last_seen > self.reset_after_s:
            self.value = (valence, arousal)
            self.trace.clear()
        else:
            weight = 1.0 - math.exp(-max(now - self.last_seen, 0.0) / self.time_constant_s)
            self.value = (
                self.value[0] + weight * (valence - self.value[0]),
                self.value[1] + weight * (arousal - self.value[1]),
            )
        self.last_seen = now
        self.trace.append((now, *self.value))
        while self.trace and now - self.trace[0][0] > self.trace_s:
            self.trace.popleft()
        return self.value

    def follow(self, now: float, faces: list[dict[str, Any]]) -> int | None:
        """Fold in the largest face of a frame seen at ``now`` (seconds): among ``faces`` (records with ``box``
        ``[x, y, w, h]`` in pixels, ``valence``, ``arousal``), the one with a prediction and the largest box area.
        A frame without such a face is a [`miss`]. Returns the index of the face followed, or ``None``."""
        predicted = [i for i, face in enumerate(faces) if has_prediction(face)]
        if not predicted:
            self.miss(now)
            return None
        main = max(predicted, key=lambda i: faces[i]["box"][2] * faces[i]["box"][3])
        self.update(now, faces[main]["valence"], faces[main]["arousal"])
        return main

    def miss(self, now: float) -> None:
        """A frame without a face at time ``now``: clears the state once ``reset_after_s`` has passed."""
        if self.last_seen is not None and now - self.last_seen > self.reset_after_s:
            self.value, self.last_seen = None, None
            self.trace.clear()

    def trace_points(self) -> list[tuple[float, float]]:
        """The smoothed (valence, arousal) of the last ``trace_s`` seconds, oldest first."""
        return [(valence, arousal) for _, valence, arousal in self.trace]


__all__ = ["AffectSmoother"]
