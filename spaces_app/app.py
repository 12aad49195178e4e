"""CAGE on a Hugging Face Space: faces in a photo or a live webcam -> expression, valence and arousal.

Shows each face boxed in its own colour, its expression probabilities and numbers, and where it lies on
Russell's circumplex (valence on x, arousal on y) next to the AffectNet-8 category reference points.
The "Live webcam" tab streams frames at a bounded rate and smooths valence/arousal over time (an
exponential moving average), drawing the last seconds as a trace.

Run locally:   CAGE_MODEL=/path/to/model_folder python app.py
Environment:   CAGE_MODEL         model folder or Hub repo id (default ``cage/maxvit-va``)
               CAGE_LIVE_INTERVAL seconds between streamed webcam frames (default 0.5, at least 0.2)

The API endpoint ``/predict`` returns the JSON record ``cage predict`` prints for one image:
``{"file": name, "faces": [{"box": [x, y, w, h], "score", "crop", "expression", "probabilities",
"valence", "arousal"}, ...]}`` (boxes in pixels of the EXIF-upright image, valence/arousal in [-1, 1]).

Everything model-specific (labels, preprocessing, crop policy, detector) comes from the ``cage`` package
and the saved model folder; this file only draws.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from cage.hub.paper_results import AFFECTNET_CLASS_MEDIANS
from cage.image_processing_cage import to_rgb
from cage.inference import load_analyzer

DEFAULT_MODEL = "cage/maxvit-va"
MAX_FACES_SHOWN = 4  # faces that get their own probability panel; the table lists all of them
TITLE = "CAGE: expression, valence and arousal"

# Okabe & Ito's colour-blind-safe palette ("Color Universal Design", 2008), black last; face i gets colour i.
FACE_COLOURS = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

# Per-class medians of (valence, arousal) over AffectNet's validation labels: reference points on the
# circumplex, not model outputs (one copy of the fact, in the installed package).
AFFECTNET_REFERENCE_POINTS = AFFECTNET_CLASS_MEDIANS

# Where each reference point's name goes: (x, y) offset in points and horizontal alignment.
REFERENCE_LABEL_PLACES = {"Contempt": ((-6, 4), "right"), "Disgust": ((-6, -10), "right"), "Fear": ((-6, 4), "right")}

# Quadrants of the valence/arousal plane (Russell 1980): (x, y) of the label in data coordinates.
QUADRANTS = {
    "pleasant\nactivated": (0.72, 1.02),
    "unpleasant\nactivated": (-0.72, 1.02),
    "unpleasant\ncalm": (-0.72, -1.02),
    "pleasant\ncalm": (0.72, -1.02),
}

NO_FACE_MESSAGE = (
    "**No face found.** The face detector found no face in this image. Try a photo where a face is "
    "upright, frontal and at least about 80 pixels wide."
)
NO_IMAGE_MESSAGE = "Upload a photo, take one with the webcam, or pick an example first."


def face_colour(index: int) -> str:
    """Hex colour of face ``index`` (0-based): the same for its box, panel, table row and plot marker."""
    return FACE_COLOURS[index % len(FACE_COLOURS)]


# --------------------------------------------------------------------------------------------- the model


@dataclass
class ModelState:
    """The loaded analyzer, or why it could not be loaded (``error``, shown to the user)."""

    name: str
    analyzer: Any = None
    error: str | None = None
    detectors: dict[str, Any] = field(default_factory=dict)

    def detector_for(self, detect_size: str | None) -> Any:
        """The analyzer's detector at ``detect_size`` (``"auto"``, or a longer side in pixels as text);
        ``None`` or the analyzer's own size: its own detector. Built once per size (thread-safe)."""
        own = self.analyzer.detector
        if not detect_size or str(detect_size) == str(getattr(own, "detect_size", detect_size)):
            return own
        with DETECTORS_LOCK:
            if detect_size not in self.detectors:
                from cage.face_detection_cage import create_face_detector

                self.detectors[detect_size] = create_face_detector(own.name, detect_size=detect_size)
            return self.detectors[detect_size]

    @property
    def banner(self) -> str:
        """Markdown describing the model: name, weights status, or the load error."""
        if self.analyzer is None:
            return f"### The model cannot be loaded\n`{self.name}`: {self.error}"
        config = self.analyzer.config
        status = getattr(config, "weights_status", "trained")
        text = (
            f"Model `{self.name}`: {config.backbone} at {config.image_size} px, "
            f"{len(config.id2label)} expressions, outputs {', '.join(config.regression_targets)}."
        )
        if status != "trained":
            text += (
                f"\n\n**These weights are not trained (`weights_status: {status}`): the predictions below are "
                "meaningless and only show how the app works.** No trained CAGE weights have been published."
            )
        return text


DETECTORS_LOCK = threading.Lock()
# Choices of the Photo tab's "Face detection" control: (label, detect_size).
DETECT_SIZE_CHOICES = [("auto: also small faces in big photos (tiles)", "auto"), ("1024 px: one fast pass", "1024")]


def has_prediction(face: dict[str, Any]) -> bool:
    """Whether a face record carries numbers (not a non-finite model output, which has ``error``)."""
    return not face.get("error") and face.get("expression") is not None


def load_model(name: str | None = None) -> ModelState:
    """Load ``name`` (default: env ``CAGE_MODEL``, else ``cage/maxvit-va``) with the dlib face detector, at
    the detection size of env ``CAGE_DETECT_SIZE`` (default ``auto``: large photos are also searched in tiles).

    Never raises: a model that cannot be loaded gives a ``ModelState`` whose ``error`` says why, so that the
    Space still starts and tells its visitors.
    """
    name = name or os.environ.get("CAGE_MODEL") or DEFAULT_MODEL
    try:
        return ModelState(name=name, analyzer=load_analyzer(name, detect_size=os.environ.get("CAGE_DETECT_SIZE")))
    except Exception as error:  # noqa: BLE001 - any failure must become a message on the page, not a crash
        return ModelState(name=name, error=str(error) or type(error).__name__)


def open_image(path: str | Path) -> Image.Image:
    """Fully decode the image file at ``path``.

    Raises:
        gr.Error: the file is missing or not a readable image; the message names the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise gr.Error(f"{path.name}: cannot read this image ({error})") from error


# ------------------------------------------------------------------------------------------------ drawing


def draw_faces(image: Image.Image, faces: list[dict[str, Any]], colours: list[str] | None = None) -> Image.Image:
    """A copy of the upright RGB ``image`` with each face's box and ``number expression`` label drawn.

    Args:
        image: the EXIF-upright RGB image the boxes refer to.
        faces: face records (``box`` ``[x, y, w, h]`` in pixels, ``expression``).
        colours: one hex colour per face; default [`face_colour`] by position.
    """
    annotated = image.copy()
    draw = ImageDraw.Draw(annotated)
    line = max(2, round(max(image.size) / 160))
    font = ImageFont.load_default(size=max(12, round(max(image.size) / 28)))
    for index, face in enumerate(faces):
        colour = colours[index] if colours else face_colour(index)
        x, y, w, h = face["box"]
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=line)
        text = f"{index + 1} {face['expression'] if has_prediction(face) else 'no prediction'}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_y = y - (bottom - top) - 2 * line if y - (bottom - top) - 2 * line >= 0 else y + h
        draw.rectangle((x, label_y, x + right - left + 2 * line, label_y + bottom - top + 2 * line), fill=colour)
        draw.text((x + line - left, label_y + line - top), text, fill="white", font=font)
    return annotated


def circumplex_figure(
    points: list[tuple[float, float, str, str]],
    trace: list[tuple[float, float]] | None = None,
    trace_colour: str = FACE_COLOURS[0],
) -> Figure:
    """Russell's circumplex: valence on x, arousal on y, the unit circle, quadrant names, the AffectNet-8
    reference points (grey), one filled marker per face and an optional trace (oldest first, faded).

    Args:
        points: ``(valence, arousal, hex colour, label)`` per face, valence and arousal in [-1, 1].
        trace: earlier smoothed ``(valence, arousal)`` values, oldest first.
    """
    figure = Figure(figsize=(5.2, 5.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    angles = [2 * math.pi * i / 256 for i in range(257)]
    axes.plot([math.cos(t) for t in angles], [math.sin(t) for t in angles], color="0.6", linewidth=1)
    axes.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    axes.axvline(0, color="0.8", linewidth=0.8, zorder=0)
    for text, (x, y) in QUADRANTS.items():
        axes.text(x, y, text, ha="center", va="center", fontsize=8, color="0.45", style="italic")
    for name, (valence, arousal) in AFFECTNET_REFERENCE_POINTS.items():
        axes.scatter([valence], [arousal], s=22, color="0.55", marker="D", zorder=2)
        offset, align = REFERENCE_LABEL_PLACES.get(name, ((5, -10), "left"))
        axes.annotate(name, (valence, arousal), xytext=offset, textcoords="offset points", ha=align, fontsize=8,
                      color="0.4")
    if trace and len(trace) > 1:
        xs, ys = zip(*trace)
        axes.plot(xs, ys, color=trace_colour, alpha=0.5, linewidth=2, zorder=3)
        axes.scatter(xs[:-1], ys[:-1], s=10, color=trace_colour, alpha=0.35, zorder=3)
    for valence, arousal, colour, label in points:
        axes.scatter([valence], [arousal], s=140, color=colour, edgecolors="white", linewidths=1.5, zorder=4)
        axes.annotate(label, (valence, arousal), xytext=(7, 6), textcoords="offset points", fontsize=11,
                      fontweight="bold", color=colour, zorder=5)
    axes.set_xlim(-1.15, 1.15)
    axes.set_ylim(-1.15, 1.15)
    axes.set_aspect("equal")
    axes.set_xlabel("valence (unpleasant \u2192 pleasant)")
    axes.set_ylabel("arousal (calm \u2192 activated)")
    axes.set_title("Circumplex of affect", fontsize=11)
    return figure


TABLE_COLUMNS = [
    "face", "colour", "expression", "probability", "valence", "arousal", "box [x, y, w, h]", "detector score"
]


def faces_table(faces: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per face: number, colour, expression, its probability, valence, arousal, box, detector score."""
    rows = [
        {
            "face": index + 1,
            "colour": face_colour(index),
            "expression": face["expression"],
            "probability": face["probabilities"][face["expression"]] if has_prediction(face) else None,
            "valence": face["valence"],
            "arousal": face["arousal"],
            "box [x, y, w, h]": str(face["box"]),
            "detector score": face["score"],
        }
        for index, face in enumerate(faces)
    ]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def face_panels(faces: list[dict[str, Any]]) -> list[Any]:
    """``MAX_FACES_SHOWN`` updates of the ``gr.Label`` panels: visible with probabilities, or hidden."""
    panels = []
    for index in range(MAX_FACES_SHOWN):
        if index < len(faces) and not has_prediction(faces[index]):
            panels.append(gr.Label(value=None, label=f"Face {index + 1}: no prediction", visible=True))
        elif index < len(faces):
            face = faces[index]
            panels.append(
                gr.Label(
                    value=face["probabilities"],
                    label=f"Face {index + 1}: valence {face['valence']:+.2f}, arousal {face['arousal']:+.2f}",
                    color=face_colour(index),
                    visible=True,
                )
            )
        else:
            panels.append(gr.Label(value=None, visible=False))
    return panels


# -------------------------------------------------------------------------------------- photo and the API


def read_and_predict(
    model: ModelState, path: str | None, detect_size: str | None = None
) -> tuple[Image.Image, dict[str, Any]]:
    """The image file at ``path`` (EXIF-upright RGB) and its ``cage predict`` record
    ``{"file": name, "faces": [...]}`` (see ``FaceExpressionAnalyzer.analyze`` for the face records).

    Raises:
        gr.Error: no image, the model could not be loaded, or the file is not a readable image.
    """
    if model.analyzer is None:
        raise gr.Error(f"The model cannot be loaded: {model.name}: {model.error}")
    if not path:
        raise gr.Error(NO_IMAGE_MESSAGE)
    image = open_image(path)
    faces = model.analyzer.analyze([image], detector=model.detector_for(detect_size))[0]
    return to_rgb(image), {"file": Path(path).name, "faces": faces}


def predict_records(model: ModelState, path: str | None) -> dict[str, Any]:
    """The ``/predict`` endpoint: the ``cage predict`` record of one image file; see [`read_and_predict`]."""
    return read_and_predict(model, path)[1]


def analyze_photo(model: ModelState, path: str | None, detect_size: str | None = None) -> tuple[Any, ...]:
    """Everything the Photo tab shows for one image file.

    Returns:
        annotated image, status markdown, ``MAX_FACES_SHOWN`` label panels, the numbers table, the circumplex
        figure and the JSON record (see [`predict_records`]); errors become the status message.
    """
    try:
        upright, record = read_and_predict(model, path, detect_size)
    except gr.Error as error:
        message = f"**{error.message}**" if model.analyzer is not None else model.banner
        return (None, message, *face_panels([]), faces_table([]), circumplex_figure([]), None)
    faces = record["faces"]
    if not faces:
        status = NO_FACE_MESSAGE
    else:
        status = f"Found **{len(faces)} face{'s' if len(faces) > 1 else ''}**, numbered left to right."
        if len(faces) > MAX_FACES_SHOWN:
            status += f" Probability panels for the first {MAX_FACES_SHOWN}; the table lists all."
    lost = sum(not has_prediction(f) for f in faces)
    if lost:
        status += f" **{lost} face(s) without a prediction** (the model output is not finite)."
    points = [
        (f["valence"], f["arousal"], face_colour(i), str(i + 1)) for i, f in enumerate(faces) if has_prediction(f)
    ]
    return (
        draw_faces(upright, faces),
        status,
        *face_panels(faces),
        faces_table(faces),
        circumplex_figure(points),
        record,
    )


# ------------------------------------------------------------------------------------------- live webcam


@dataclass
class AffectSmoother:
    """Exponential moving average of (valence, arousal) over irregularly spaced frames, plus a short trace.

    The weight of a new frame is ``1 - exp(-dt / time_constant_s)`` (``dt``: seconds since the previous
    frame), so the smoothing does not depend on the frame rate. After ``reset_after_s`` without a face the
    average restarts from the next face.

    Attributes:
        time_constant_s: EMA time constant in seconds (larger = smoother, slower).
        trace_s: seconds of smoothed values kept for the trace.
        reset_after_s: seconds without a face after which the state is cleared.
    """

    time_constant_s: float = 1.0
    trace_s: float = 5.0
    reset_after_s: float = 2.0
    value: tuple[float, float] | None = None
    last_seen: float | None = None
    last_frame: float | None = None
    trace: deque = field(default_factory=deque)

    def update(self, now: float, valence: float, arousal: float) -> tuple[float, float]:
        """Fold in a face seen at time ``now`` (seconds); returns the smoothed (valence, arousal)."""
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

    def miss(self, now: float) -> None:
        """A frame without a face at time ``now``: clears the state once ``reset_after_s`` has passed."""
        if self.last_seen is not None and now - self.last_seen > self.reset_after_s:
            self.value, self.last_seen = None, None
            self.trace.clear()

    def trace_points(self) -> list[tuple[float, float]]:
        """The smoothed (valence, arousal) of the last ``trace_s`` seconds, oldest first."""
        return [(valence, arousal) for _, valence, arousal in self.trace]


def live_interval() -> float:
    """Seconds between streamed webcam frames: env ``CAGE_LIVE_INTERVAL`` (default 0.5), at least 0.2."""
    return max(0.2, float(os.environ.get("CAGE_LIVE_INTERVAL", "0.5")))


def analyze_frame(model: ModelState, frame: Image.Image | None, smoother: AffectSmoother | None) -> tuple[Any, ...]:
    """One streamed webcam frame: the largest face is followed and smoothed; all faces are boxed.

    Returns:
        annotated frame, circumplex figure (raw point hollow, smoothed point filled, trace), status markdown,
        and the smoother (per-session state). Frames arriving faster than [`live_interval`] are skipped.
    """
    smoother = smoother if smoother is not None else AffectSmoother()
    now = time.monotonic()
    if frame is None:
        return gr.skip(), gr.skip(), gr.skip(), smoother
    if model.analyzer is None:
        return gr.skip(), gr.skip(), model.banner, smoother
    if smoother.last_frame is not None and now - smoother.last_frame < 0.8 * live_interval():
        return gr.skip(), gr.skip(), gr.skip(), smoother  # bound the rate whatever the client sends
    upright = to_rgb(frame)
    faces = model.analyzer.analyze([upright])[0]
    smoother.last_frame = time.monotonic()  # the bound counts from the end of the work: a slow CPU is not flooded
    if not faces:
        smoother.miss(now)
        figure = circumplex_figure([], smoother.trace_points())
        return upright, figure, NO_FACE_MESSAGE, smoother
    if not any(has_prediction(face) for face in faces):
        smoother.miss(now)
        message = "**No prediction**: the model output is not finite for every face in this frame."
        return draw_faces(upright, faces), circumplex_figure([], smoother.trace_points()), message, smoother
    predicted = [i for i in range(len(faces)) if has_prediction(faces[i])]
    main = max(predicted, key=lambda i: faces[i]["box"][2] * faces[i]["box"][3])
    colours = [FACE_COLOURS[0] if i == main else "#9E9E9E" for i in range(len(faces))]
    face = faces[main]
    valence, arousal = smoother.update(now, face["valence"], face["arousal"])
    points = [(valence, arousal, FACE_COLOURS[0], face["expression"])]
    figure = circumplex_figure(points, smoother.trace_points())
    axes = figure.axes[0]
    axes.scatter([face["valence"]], [face["arousal"]], s=60, facecolors="none", edgecolors=FACE_COLOURS[0], zorder=4)
    status = (
        f"**{face['expression']}** ({face['probabilities'][face['expression']]:.0%}); smoothed valence "
        f"{valence:+.2f}, arousal {arousal:+.2f} (this frame: {face['valence']:+.2f}, {face['arousal']:+.2f})."
    )
    return draw_faces(upright, faces, colours), figure, status, smoother


# ---------------------------------------------------------------------------------------------- examples


def example_images(folder: str | Path | None = None) -> list[str]:
    """Example photos the app can make itself, from scikit-image's bundled data: ``astronaut`` (a face)
    and ``coffee`` (no face). Returns their paths (written once to ``folder``, default a temp folder)."""
    from skimage import data

    folder = Path(folder or Path(tempfile.gettempdir()) / "cage-space-examples")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee"):
        path = folder / f"{name}.jpg"
        if not path.is_file():
            Image.fromarray(getattr(data, name)()).save(path, quality=95)
        paths.append(str(path))
    return paths


# --------------------------------------------------------------------------------------------------- UI

INTRO = f"""# {TITLE}
[CAGE](https://arxiv.org/abs/2404.14975) (Wagner et al., CVPR 2024 Workshops) predicts, for every face, one
of the AffectNet expressions and two continuous numbers: **valence** (unpleasant -1 to pleasant +1) and
**arousal** (calm -1 to activated +1). Together they place the face on Russell's *circumplex of affect*;
the grey diamonds are where AffectNet's validation faces of each expression typically lie (medians)."""


def build_demo(model: ModelState | str | None = None) -> gr.Blocks:
    """The Space's Blocks: a Photo tab (upload/webcam snapshot), a Live webcam tab, and the ``/predict`` API.

    Args:
        model: a loaded [`ModelState`], a model folder / Hub repo id, or ``None`` for env ``CAGE_MODEL``.

    API endpoints (for ``gradio_client``): ``/predict`` (image -> ``cage predict`` JSON record) and
    ``/analyze`` (image -> everything the Photo tab shows).
    """
    state = model if isinstance(model, ModelState) else load_model(model)

    def analyze(path: str | None, detect_size: str | None = "auto"):
        return analyze_photo(state, path, detect_size)

    def predict(path: str | None) -> dict[str, Any]:
        """Faces in one image, as `cage predict` prints them: {"file", "faces": [{"box": [x, y, w, h],
        "score", "crop", "expression", "probabilities", "valence", "arousal"}]}."""
        return predict_records(state, path)

    def live(frame, smoother):
        return analyze_frame(state, frame, smoother)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(state.banner, elem_id="model-banner")
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = gr.Image(
                        sources=["upload", "webcam", "clipboard"], type="filepath", label="Photo", elem_id="photo"
                    )
                    detect_size = gr.Dropdown(
                        DETECT_SIZE_CHOICES,
                        value="auto",
                        label="Face detection",
                        info="auto finds small faces in big group photos (slower on large photos)",
                        elem_id="detect-size",
                    )
                    submit = gr.Button("Analyze", variant="primary", elem_id="analyze")
                    gr.Examples(
                        example_images(), inputs=photo, example_labels=["astronaut (a face)", "coffee (no face)"]
                    )
                with gr.Column(scale=1):
                    annotated = gr.Image(
                        label="Faces", type="pil", format="png", interactive=False, buttons=["download", "fullscreen"],
                        elem_id="annotated",
                    )
                    status = gr.Markdown(elem_id="status")
                with gr.Column(scale=1):
                    plot = gr.Plot(label="Circumplex", show_label=False, format="png", elem_id="circumplex")
            with gr.Row():
                panels = [
                    gr.Label(num_top_classes=8, visible=False, elem_id=f"face-{i + 1}") for i in range(MAX_FACES_SHOWN)
                ]
            table = gr.Dataframe(label="Numbers", interactive=False, elem_id="numbers", value=faces_table([]))
            with gr.Accordion("JSON (the same records as `cage predict`)", open=False):
                records = gr.JSON(elem_id="records")
            submit.click(
                analyze,
                inputs=[photo, detect_size],
                outputs=[annotated, status, *panels, table, plot, records],
                api_name="analyze",
            )
            api_button = gr.Button(visible=False)
            api_button.click(predict, inputs=photo, outputs=records, api_name="predict")
        with gr.Tab("Live webcam"):
            gr.Markdown(
                f"Streams a webcam frame every {live_interval():g} s. The largest face is followed; its valence "
                "and arousal are smoothed over about a second (exponential moving average) and the last 5 s "
                "are drawn as a trace. The hollow circle is the current frame's raw value."
            )
            with gr.Row():
                webcam = gr.Image(sources=["webcam"], streaming=True, type="pil", label="Webcam", elem_id="webcam")
                live_annotated = gr.Image(
                    label="Faces", type="pil", interactive=False, buttons=["fullscreen"], elem_id="live-annotated"
                )
                live_plot = gr.Plot(
                    label="Circumplex (smoothed)", show_label=False, format="png", elem_id="live-circumplex"
                )
            live_status = gr.Markdown(elem_id="live-status")
            smoother = gr.State(None)
            webcam.stream(
                live,
                inputs=[webcam, smoother],
                outputs=[live_annotated, live_plot, live_status, smoother],
                stream_every=live_interval(),
                time_limit=120,
                concurrency_limit=2,
                api_visibility="private",
            )
    return demo


# Plain system fonts: the page makes no request outside the Space.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])

if __name__ == "__main__":
    build_demo().launch(theme=THEME)
