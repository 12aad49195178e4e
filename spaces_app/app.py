"""CAGE on a Hugging Face Space: faces in a photo or a live webcam -> expression, valence and arousal.

Run locally: ``python app.py`` (the model bundled with cage) or ``CAGE_MODEL=/path/to/model_folder python app.py``.
Environment: ``CAGE_MODEL`` (model folder or Hub repo id; default: the model bundled with cage, trained on FER+,
whose valence/arousal are derived targets), ``CAGE_DETECT_SIZE`` (default ``auto``), ``CAGE_LIVE_INTERVAL`` (seconds
between streamed webcam frames, default 0.5, at least 0.2). The API endpoint ``/predict`` returns the record
``cage predict`` prints for one image (boxes ``[x, y, w, h]`` in pixels of the EXIF-upright image, valence and
arousal in [-1, 1]). Reading, detection, prediction, box drawing and smoothing are the ``cage`` library's
(``load_image``, the analyzer, ``annotate``, ``AffectSmoother``), so is the circumplex plot; this file is the page.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from cage.evaluation.plots import QUADRANTS, circumplex_figure as circumplex_plot  # noqa: F401 (QUADRANTS: names)
from cage.face_detection_cage import create_face_detector
from cage.hub.paper_results import AFFECTNET_CLASS_MEDIANS as AFFECTNET_REFERENCE_POINTS  # (valence, arousal)
from cage.inference import load_analyzer
from cage.inference.output import annotate, has_prediction
from cage.inference.smoothing import AffectSmoother
from cage.model_folder import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME, default_model, derived_targets_note
from cage.pipeline_cage import load_image

DEFAULT_MODEL = None  # the model bundled with cage (cage.model_folder.BUNDLED_MODEL_DIR)
MAX_FACES_SHOWN = 4  # faces that get their own probability panel; the table lists all of them
TITLE = "CAGE: expression, valence and arousal"
# Okabe & Ito's colour-blind-safe palette ("Color Universal Design", 2008), black last; face i gets colour i.
FACE_COLOURS = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
NO_FACE_MESSAGE = ("**No face found.** The face detector found no face in this image. Try a photo where a face is "
                   "upright, frontal and at least about 80 pixels wide.")  # fmt: skip
NO_IMAGE_MESSAGE = "Upload a photo, take one with the webcam, or pick an example first."
# Choices of the Photo tab's "Face detection" control: (label, detect_size).
DETECT_SIZE_CHOICES = [("auto: also small faces in big photos (tiles)", "auto"), ("1024 px: one fast pass", "1024")]


# Limits per request (README, "The Space"): uploads over MAX_UPLOAD_BYTES are refused by the server, images over
# MAX_PIXELS before they are decoded (a 194 KB PNG can hold 13000 x 13000 pixels); uploaded files are deleted
# from the server's cache an hour after upload (CACHE_CLEANUP).
MAX_UPLOAD_BYTES = int(os.environ.get("CAGE_MAX_UPLOAD_MB", "20")) * 1_000_000
MAX_PIXELS = int(float(os.environ.get("CAGE_MAX_MEGAPIXELS", "40")) * 1_000_000)
CACHE_CLEANUP = (600, 3600)  # every 10 min, files older than 1 h


class UploadedImage(gr.Image):
    """``gr.Image`` whose uploads reach the app as the uploaded file itself (``type="filepath"``), bytes unchanged.

    ``gr.Image`` decodes an upload and saves it again as RGB, so a 16-bit PNG turned white and gray, CMYK or
    EXIF-rotated JPEGs were re-encoded (other boxes, other values, another name) before cage saw them, and a file
    PIL could not open failed inside gradio with no message. Here the library's own reader reads the original
    bytes, exactly as ``cage predict`` does, and says what is wrong with a bad file.
    """

    is_template = True  # the browser draws it with gr.Image's own frontend (gradio's template components)

    def preprocess(self, payload):
        if payload is not None and getattr(payload, "path", None) and not str(payload.path).startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)


def face_colour(index: int) -> str:
    """Hex colour of face ``index`` (0-based): the same for its box, panel, table row and plot marker."""
    return FACE_COLOURS[index % len(FACE_COLOURS)]


@dataclass
class ModelState:
    """The loaded analyzer, or why it could not be loaded (``error``, shown to the user)."""

    name: str
    analyzer: Any = None
    error: str | None = None

    def detector_for(self, detect_size: str | None) -> Any:
        """The analyzer's detector at ``detect_size`` (``"auto"``, or a longer side in pixels as text);
        ``None`` or the analyzer's own size: its own detector. Others are cached per detector name and size."""
        own = self.analyzer.detector
        if not detect_size or str(detect_size) == str(getattr(own, "detect_size", detect_size)):
            return own
        return self._detector(own.name, str(detect_size))

    @staticmethod
    @functools.cache
    def _detector(name: str, detect_size: str) -> Any:
        return create_face_detector(name, detect_size=detect_size)

    @property
    def banner(self) -> str:
        """Markdown describing the model: name, weights status, or the load error."""
        if self.analyzer is None:
            return f"### The model cannot be loaded\n`{self.name}`: {self.error}"
        config, status = self.analyzer.config, getattr(self.analyzer.config, "weights_status", "trained")
        shown = f"{BUNDLED_MODEL_NAME} (bundled with cage)" if Path(self.name) == BUNDLED_MODEL_DIR else self.name
        text = (f"Model `{shown}`: {config.backbone} at {config.image_size} px, {len(config.id2label)} "
                f"expressions, outputs {', '.join(config.regression_targets)}.")  # fmt: skip
        note = derived_targets_note(config)
        if note:
            text += f"\n\n**Note:** {note[0].upper() + note[1:]}."
        return text if status == "trained" else text + (
            f"\n\n**These weights are not trained (`weights_status: {status}`): the predictions below are "
            "meaningless and only show how the app works.** Leave `CAGE_MODEL` unset for the trained model bundled with cage.")  # fmt: skip


def load_model(name: str | None = None) -> ModelState:
    """Load ``name`` (default: env ``CAGE_MODEL``, else the model bundled with cage) with the ``auto`` face detector
    (YuNet where its model file can be had: env ``CAGE_YUNET_MODEL``, the Hugging Face cache or the Hub; else dlib)
    at the detection size of env ``CAGE_DETECT_SIZE`` (default ``auto``: large photos are also searched in tiles).
    Never raises: the ``ModelState`` of a model that cannot be loaded says why, and the Space tells its visitors."""
    name = name or os.environ.get("CAGE_MODEL") or DEFAULT_MODEL
    try:
        name = default_model(name)
        return ModelState(name=name, analyzer=load_analyzer(name, detect_size=os.environ.get("CAGE_DETECT_SIZE")))
    except Exception as error:  # noqa: BLE001 - any failure must become a message on the page, not a crash
        return ModelState(name=name, error=str(error) or type(error).__name__)


def draw_faces(image: Image.Image, faces: list[dict[str, Any]], colours: list[str] | None = None) -> Image.Image:
    """A copy of the upright ``image`` with each face boxed and labelled ``number expression`` (the library's
    ``annotate``); ``colours``: one hex colour per face, default [`face_colour`] by position."""
    return annotate(image, faces, colours or [face_colour(i) for i in range(len(faces))], numbered=True)


def circumplex_figure(points: list[tuple[float, float, str, str]], trace: list[tuple[float, float]] | None = None):
    """Russell's circumplex with the AffectNet-8 reference points (grey), a marker per ``(valence, arousal,
    colour, label)`` in ``points`` and the smoothed ``trace``, oldest first (``cage.evaluation.plots``)."""
    return circumplex_plot(points, trace, AFFECTNET_REFERENCE_POINTS, trace_colour=FACE_COLOURS[0])


def faces_table(faces: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per face: number, colour, expression, its probability, valence, arousal, box, detector score."""
    rows = [[i + 1, face_colour(i), f["expression"], f["probabilities"][f["expression"]] if has_prediction(f) else None,
             f["valence"], f["arousal"], str(f["box"]), f["score"]] for i, f in enumerate(faces)]  # fmt: skip
    return pd.DataFrame(rows, columns=["face", "colour", "expression", "probability", "valence", "arousal",
                                       "box [x, y, w, h]", "detector score"])  # fmt: skip


def face_panels(faces: list[dict[str, Any]]) -> list[Any]:
    """``MAX_FACES_SHOWN`` updates of the ``gr.Label`` panels: visible with probabilities, or hidden."""
    panels = []
    for i in range(MAX_FACES_SHOWN):
        if i >= len(faces):
            panels.append(gr.Label(value=None, visible=False))
        elif not has_prediction(face := faces[i]):
            panels.append(gr.Label(value=None, label=f"Face {i + 1}: no prediction", visible=True))
        else:
            label = f"Face {i + 1}: valence {face['valence']:+.2f}, arousal {face['arousal']:+.2f}"
            panels.append(gr.Label(value=face["probabilities"], label=label, color=face_colour(i), visible=True))
    return panels


def check_upload(path: str) -> None:
    """Refuse, before decoding anything, an upload larger than ``MAX_UPLOAD_BYTES`` or with more than
    ``MAX_PIXELS`` pixels (read from the image header): bounded time and memory per request.

    Raises:
        gr.Error: too large, or not an image the library can open (the message names the upload).
    """
    name = Path(path).name
    size = Path(path).stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise gr.Error(f"{name}: {size / 1e6:.1f} MB is more than this Space accepts ({MAX_UPLOAD_BYTES / 1e6:.0f} MB)")
    try:
        with Image.open(path) as header:  # reads the header only
            width, height = header.size
    except Exception as error:  # noqa: BLE001 - whatever PIL raises: not an image it can open
        raise gr.Error(f"{name}: cannot read this image ({type(error).__name__}: {error})") from None
    if width * height > MAX_PIXELS:
        raise gr.Error(
            f"{name}: {width} x {height} pixels ({width * height / 1e6:.0f} MP) is more than this Space decodes "
            f"({MAX_PIXELS / 1e6:.0f} MP); scale it down first, or run `cage predict` on it"
        )


def read_and_predict(model: ModelState, path: str | None, detect_size: str | None = None) -> tuple[Image.Image, dict]:
    """The image file at ``path`` (EXIF-upright RGB, the library's ``load_image``, from the uploaded bytes as they
    are) and its ``cage predict`` record ``{"file": name, "faces": [...]}`` (``FaceExpressionAnalyzer.analyze``).

    Raises:
        gr.Error: no image, the model could not be loaded, an upload over the limits ([`check_upload`]), or a
            file that is not a readable image (named).
    """
    if model.analyzer is None:
        raise gr.Error(f"The model cannot be loaded: {model.name}: {model.error}")
    if not path:
        raise gr.Error(NO_IMAGE_MESSAGE)
    name = Path(path).name
    check_upload(path)
    try:
        image = load_image(path)
    except OSError as error:  # the library names the full (temporary) path; the page names the upload only
        detail = error.__cause__ or str(error).removeprefix(f"{Path(path)}: ")
        raise gr.Error(f"{name}: cannot read this image ({detail})") from error
    return image, {"file": name, "faces": model.analyzer.analyze([image], detector=model.detector_for(detect_size))[0]}


def predict_records(model: ModelState, path: str | None) -> dict[str, Any]:
    """The ``/predict`` endpoint: the ``cage predict`` record of one image file; see [`read_and_predict`]."""
    return read_and_predict(model, path)[1]


def analyze_photo(model: ModelState, path: str | None, detect_size: str | None = None) -> tuple[Any, ...]:
    """Everything the Photo tab shows for one image file: annotated image, status markdown, ``MAX_FACES_SHOWN``
    label panels, the numbers table, the circumplex figure and the JSON record; errors become the status."""
    try:
        image, record = read_and_predict(model, path, detect_size)
    except gr.Error as error:
        message = f"**{error.message}**" if model.analyzer is not None else model.banner
        return (None, message, *face_panels([]), faces_table([]), circumplex_figure([]), None)
    faces = record["faces"]
    status = f"Found **{len(faces)} face{'s' if len(faces) > 1 else ''}**, numbered left to right." if faces else ""
    if len(faces) > MAX_FACES_SHOWN:
        status += f" Probability panels for the first {MAX_FACES_SHOWN}; the table lists all."
    if lost := sum(not has_prediction(f) for f in faces):
        status += f" **{lost} face(s) without a prediction** (the model output is not finite)."
    points = [(f["valence"], f["arousal"], face_colour(i), f"{i + 1}") for i, f in enumerate(faces)
              if has_prediction(f)]  # fmt: skip
    figure = circumplex_figure(points)
    return draw_faces(image, faces), status or NO_FACE_MESSAGE, *face_panels(faces), faces_table(faces), figure, record


@dataclass
class LiveSession(AffectSmoother):
    """Per-visitor state of the Live tab: the library's smoother plus when the last frame was analysed."""

    last_frame: float | None = None


def live_interval() -> float:
    """Seconds between streamed webcam frames: env ``CAGE_LIVE_INTERVAL`` (default 0.5), at least 0.2."""
    return max(0.2, float(os.environ.get("CAGE_LIVE_INTERVAL", "0.5")))


def analyze_frame(model: ModelState, frame: Image.Image | None, smoother: LiveSession | None) -> tuple[Any, ...]:
    """One streamed webcam frame: the largest face is followed and smoothed; all faces are boxed.

    Returns:
        annotated frame, circumplex figure (raw point hollow, smoothed point filled, trace), status markdown,
        and the smoother (per-session state). Frames arriving faster than [`live_interval`] are skipped.
    """
    smoother, now = smoother if smoother is not None else LiveSession(), time.monotonic()
    if frame is None or (smoother.last_frame is not None and now - smoother.last_frame < 0.8 * live_interval()):
        return gr.skip(), gr.skip(), gr.skip(), smoother  # bound the rate whatever the client sends
    if model.analyzer is None:
        return gr.skip(), gr.skip(), model.banner, smoother
    faces = model.analyzer.analyze([upright := load_image(frame)])[0]
    smoother.last_frame = time.monotonic()  # the bound counts from the end of the work: a slow CPU is not flooded
    if (main := smoother.follow(now, faces)) is None:
        message = "**No prediction**: the model output is not finite for every face in this frame."
        drawn = draw_faces(upright, faces) if faces else upright
        return drawn, circumplex_figure([], smoother.trace_points()), message if faces else NO_FACE_MESSAGE, smoother
    (valence, arousal), face = smoother.value, faces[main]
    figure = circumplex_figure([(valence, arousal, FACE_COLOURS[0], face["expression"])], smoother.trace_points())
    raw = face["valence"], face["arousal"]
    figure.axes[0].scatter(*raw, s=60, facecolors="none", edgecolors=FACE_COLOURS[0], zorder=4)
    status = (f"**{face['expression']}** ({face['probabilities'][face['expression']]:.0%}); smoothed valence "
              f"{valence:+.2f}, arousal {arousal:+.2f} (this frame: {raw[0]:+.2f}, {raw[1]:+.2f}).")  # fmt: skip
    colours = [FACE_COLOURS[0] if i == main else "#9E9E9E" for i in range(len(faces))]
    return draw_faces(upright, faces, colours), figure, status, smoother


def example_images(folder: str | Path | None = None) -> list[str]:
    """Example photos from scikit-image's bundled data: ``astronaut`` (a face) and ``coffee`` (no face).
    Returns their paths (written once to ``folder``, default a temp folder)."""
    from skimage import data

    folder = Path(folder or Path(tempfile.gettempdir()) / "cage-space-examples")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.jpg" for name in ("astronaut", "coffee")]
    for path in paths:
        if not path.is_file():
            Image.fromarray(getattr(data, path.stem)()).save(path, quality=95)
    return [str(path) for path in paths]


INTRO = f"""# {TITLE}
[CAGE](https://arxiv.org/abs/2404.14975) (Wagner et al., CVPR 2024 Workshops) predicts, for every face, one
of the AffectNet expressions and two continuous numbers: **valence** (unpleasant -1 to pleasant +1) and
**arousal** (calm -1 to activated +1). Together they place the face on Russell's *circumplex of affect*;
the grey diamonds are where AffectNet's validation faces of each expression typically lie (medians)."""
LIVE_INTRO = ("Streams a webcam frame every {:g} s. The largest face is followed; its valence and arousal are smoothed "
              "over about a second (exponential moving average) and the last 5 s are drawn as a trace. The hollow "
              "circle is the current frame's raw value.")  # fmt: skip
# Plain system fonts: the page makes no request outside the Space.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_demo(model: ModelState | str | None = None) -> gr.Blocks:
    """The Space's Blocks: a Photo tab (upload/webcam snapshot), a Live webcam tab, and API endpoints (for
    ``gradio_client``) ``/predict`` (image -> ``cage predict`` JSON record) and ``/analyze`` (image -> everything
    the Photo tab shows). ``model``: a loaded [`ModelState`], a model folder / Hub id, or ``None`` (env)."""
    state = model if isinstance(model, ModelState) else load_model(model)

    def predict(path: str | None) -> dict[str, Any]:
        """Faces in one image, as `cage predict` prints them: {"file", "faces": [{"box": [x, y, w, h],
        "score", "crop", "expression", "probabilities", "valence", "arousal"}]}."""
        return predict_records(state, path)

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(state.banner, elem_id="model-banner")
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column(scale=1):
                    sources = ["upload", "webcam", "clipboard"]
                    photo = UploadedImage(sources=sources, type="filepath", label="Photo", elem_id="photo")
                    info = "auto finds small faces in big group photos (slower on large photos)"
                    detect_size = gr.Dropdown(DETECT_SIZE_CHOICES, value="auto", label="Face detection", info=info,
                                              elem_id="detect-size")  # fmt: skip
                    submit = gr.Button("Analyze", variant="primary", elem_id="analyze")
                    examples = ["astronaut (a face)", "coffee (no face)"]
                    gr.Examples(example_images(), inputs=photo, example_labels=examples)
                with gr.Column(scale=1):
                    annotated = gr.Image(label="Faces", type="pil", format="png", interactive=False,
                                         buttons=["download", "fullscreen"], elem_id="annotated")  # fmt: skip
                    status = gr.Markdown(elem_id="status")
                with gr.Column(scale=1):
                    plot = gr.Plot(label="Circumplex", show_label=False, format="png", elem_id="circumplex")
            with gr.Row():
                panels = [gr.Label(num_top_classes=8, visible=False, elem_id=f"face-{n + 1}")
                          for n in range(MAX_FACES_SHOWN)]  # fmt: skip
            table = gr.Dataframe(label="Numbers", interactive=False, elem_id="numbers", value=faces_table([]))
            with gr.Accordion("JSON (the same records as `cage predict`)", open=False):
                records = gr.JSON(elem_id="records")
            outputs = [annotated, status, *panels, table, plot, records]
            submit.click(lambda path, size="auto": analyze_photo(state, path, size), [photo, detect_size], outputs,
                         api_name="analyze")  # fmt: skip
            gr.Button(visible=False).click(predict, inputs=photo, outputs=records, api_name="predict")
        with gr.Tab("Live webcam"):
            gr.Markdown(LIVE_INTRO.format(live_interval()))
            with gr.Row():
                webcam = gr.Image(sources=["webcam"], streaming=True, type="pil", label="Webcam", elem_id="webcam")
                live_image = gr.Image(label="Faces", type="pil", interactive=False, buttons=["fullscreen"],
                                      elem_id="live-annotated")  # fmt: skip
                live_plot = gr.Plot(label="Circumplex (smoothed)", show_label=False, format="png",
                                    elem_id="live-circumplex")  # fmt: skip
            live_status, session = gr.Markdown(elem_id="live-status"), gr.State(None)
            webcam.stream(lambda frame, smoother: analyze_frame(state, frame, smoother), [webcam, session],
                          [live_image, live_plot, live_status, session], stream_every=live_interval(), time_limit=120,
                          concurrency_limit=2, api_visibility="private")  # fmt: skip
    return demo


def launch_options() -> dict[str, Any]:
    """The options of ``demo.launch`` the Space runs with: the upload size limit and the theme."""
    return {"max_file_size": MAX_UPLOAD_BYTES, "theme": THEME}


if __name__ == "__main__":
    build_demo().launch(**launch_options())
