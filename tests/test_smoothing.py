"""Valence/arousal smoothing over time (``cage.inference.smoothing``), as the Space's live tab uses it."""

from __future__ import annotations

import math

import pytest

from cage.inference.smoothing import AffectSmoother


def test_smoother_is_an_exponential_moving_average_in_time():
    smoother = AffectSmoother(time_constant_s=1.0, trace_s=5.0, reset_after_s=2.0)
    assert smoother.update(0.0, 1.0, -1.0) == (1.0, -1.0)
    valence, arousal = smoother.update(1.0, 0.0, 0.0)
    assert valence == pytest.approx(math.exp(-1.0)) and arousal == pytest.approx(-math.exp(-1.0))
    # Two half-second frames of the same input move it exactly as far as one one-second frame.
    halves = AffectSmoother(time_constant_s=1.0)
    halves.update(0.0, 1.0, 1.0)
    halves.update(0.5, 0.0, 0.0)
    assert halves.update(1.0, 0.0, 0.0) == pytest.approx((math.exp(-1.0), math.exp(-1.0)))
    for second in range(2, 9):
        smoother.update(float(second), 0.0, 0.0)
    assert [round(t) for t, _, _ in smoother.trace] == [3, 4, 5, 6, 7, 8]  # the last 5 s
    assert len(smoother.trace_points()) == 6
    smoother.miss(9.0)
    assert smoother.value is not None  # a short gap keeps the average
    smoother.miss(10.5)
    assert smoother.value is None and smoother.trace_points() == []
    assert smoother.update(11.0, -0.5, 0.25) == (-0.5, 0.25)  # restarts from the next face


def test_follow_takes_the_largest_face_with_a_prediction():
    smoother = AffectSmoother()
    faces = [
        {"box": [0, 0, 100, 100], "expression": None, "valence": None, "arousal": None, "error": "not finite"},
        {"box": [200, 0, 50, 50], "expression": "Happy", "valence": 0.5, "arousal": -0.2},
        {"box": [300, 0, 60, 40], "expression": "Sad", "valence": -0.1, "arousal": 0.3},
    ]
    assert smoother.follow(0.0, faces) == 1  # 2500 px^2 > 2400 px^2; the largest box has no prediction
    assert smoother.value == (0.5, -0.2)
    assert smoother.follow(1.0, faces[:1]) is None and smoother.value == (0.5, -0.2)  # a short miss keeps it
    assert smoother.follow(3.5, []) is None and smoother.value is None  # past reset_after_s: cleared
