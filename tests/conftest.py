"""Shared fixtures: the shared real photos, and small CAGE models saved to disk.

Tests use timm's ``maxvit_rmlp_pico_rw_256`` built at 64 px (7 M parameters) to stay fast on 2 CPU cores;
the real MaxViT-T (torchvision ``maxvit_t``, the default) appears only where its exact layout is the point of the test.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Converted graphs (OpenVINO IR, ONNX) of test models go to one cache per session, never to ~/.cache/cage.
os.environ.setdefault("CAGE_CACHE", tempfile.mkdtemp(prefix="cage-test-cache-"))

REPO_ROOT = Path(__file__).resolve().parents[1]
FACES_DIR = REPO_ROOT.parent / "shared" / "faces"
FERPLUS_DIR = REPO_ROOT.parent / "shared" / "datasets" / "ferplus"
TINY_BACKBONE = "maxvit_rmlp_pico_rw_256"
TINY_SIZE = 64


# Prepended to scripts that tests run in a subprocess to prove a saved model works where `cage` is not
# installed: any import of `cage` fails, and the script refuses to go on if it does not.
BLOCK_CAGE_IMPORTS = """
import importlib.abc, sys

class BlockCage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "cage" or name.startswith("cage."):
            raise ImportError("cage is blocked in this process")

sys.meta_path.insert(0, BlockCage())
try:
    import cage  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("cage is importable: the test would not prove anything")
"""


def face_photo(name: str) -> Path:
    """Path of a shared public-domain photo; skips the test when ../shared/faces is absent."""
    path = FACES_DIR / name
    if not path.is_file():
        pytest.skip(f"shared face photo {path} is absent (tests expect ../shared/faces beside the repo)")
    return path


def ferplus_dir() -> Path:
    """The shared FER+ copy (Microsoft's folder layout); skips the test when ../shared/datasets/ferplus is absent."""
    if not (FERPLUS_DIR / "FER2013Valid" / "label.csv").is_file():
        pytest.skip(f"the shared FER+ copy {FERPLUS_DIR} is absent (tests expect ../shared/datasets/ferplus)")
    return FERPLUS_DIR


def ferplus_rows(split_folder: str, count: int | None = None, start: int = 0) -> list[list[str]]:
    """Rows of the shared FER+ ``split_folder``'s label.csv (file, box, 10 votes), ``count`` from ``start``."""
    import csv

    with open(ferplus_dir() / split_folder / "label.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[start:] if count is None else rows[start : start + count]


@pytest.fixture(scope="session")
def ferplus_subset(tmp_path_factory) -> Path:
    """A real FER+ subset in Microsoft's folder layout: the first 240 faces of FER2013Train and 120 of
    FER2013Valid from ../shared, with their label.csv rows."""
    from cage.data.ferplus import copy_ferplus_subset

    root = tmp_path_factory.mktemp("ferplus") / "FERPlus"
    return copy_ferplus_subset(ferplus_dir(), root, {"FER2013Train": 240, "FER2013Valid": 120})


@pytest.fixture(scope="session")
def ferplus_prepared(ferplus_subset, tmp_path_factory) -> Path:
    """``ferplus_subset`` prepared by ``cage prepare ferplus`` (no framing calibration)."""
    from cage.data.ferplus import prepare_ferplus

    out = tmp_path_factory.mktemp("ferplus-prepared") / "data"
    prepare_ferplus(ferplus_subset, out, calibrate=False)
    return out


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not FACES_DIR.is_dir():
        pytest.skip(f"{FACES_DIR} is absent (tests expect ../shared/faces beside the repo)")
    return FACES_DIR


@pytest.fixture(scope="session")
def coffee_image(tmp_path_factory) -> Path:
    """scikit-image's bundled ``coffee`` photo (a cup, no face), saved as PNG."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    path = tmp_path_factory.mktemp("coffee") / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained AffectNet-8 model with the tiny backbone, saved with ``save_pretrained``."""
    from cage.presets import write_untrained_model

    return write_untrained_model(
        tmp_path_factory.mktemp("models") / "tiny", backbone=TINY_BACKBONE, image_size=TINY_SIZE, seed=0
    )


def pytest_ignore_collect(collection_path, config):
    # `-m "not transformers_mixins"` deselects transformers' common tests; skipping the module's collection as
    # well spares the one-time download of the transformers sdist that importing it would trigger.
    if collection_path.name == "test_transformers_mixins.py" and "not transformers_mixins" in (
        config.getoption("markexpr") or ""
    ):
        return True
    return None


# Helpers shared by several test files: one copy each (issue 16). Fixtures are found by pytest; the plain
# functions and constants are imported (`from conftest import free_port`), like `face_photo` above.

# gradio's queue calls pandas options that pandas 3 deprecates; not this project's code.
GRADIO_PANDAS_WARNINGS = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch at one intra-op thread for a module's tests, restored afterwards: on a loaded 2-core machine two
    intra-op threads make the tiny models about 10x slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(one_torch_thread, capsys):
    """``cli(*args) -> (exit code, stdout, stderr)``: ``cage.cli.main`` run in this process (the console
    script's code path minus interpreter start-up), its output captured."""
    from cage.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def without_timing(history: list[dict]) -> list[dict]:
    """A training history (``config.training_recipe["history"]``) without its wall-clock measurements
    (``train_seconds``, ``images_per_second``), which differ between otherwise identical runs."""
    return [{k: v for k, v in entry.items() if k not in ("train_seconds", "images_per_second")} for entry in history]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS's choice), for a server a test starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def face_crops(processor, names) -> list:
    """Face crops of the shared photos ``names`` (in order; within a photo, the faces left to right): each photo
    opened as RGB (no EXIF transpose), faces found by the dlib detector, cropped by ``processor.crop``."""
    from PIL import Image

    from cage.face_detection_cage import create_face_detector

    detector = create_face_detector("dlib")
    crops = []
    for name in names:
        with Image.open(face_photo(name)) as image:
            image = image.convert("RGB")
            crops += [processor.crop(image, detection.box) for detection in detector.detect(image)]
    return crops


def load_space_app():
    """spaces_app/app.py as the module ``space_app`` (a Space is a folder, not a package), imported once."""
    import importlib.util
    import sys

    if "space_app" in sys.modules:
        return sys.modules["space_app"]
    spec = importlib.util.spec_from_file_location("space_app", REPO_ROOT / "spaces_app" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["space_app"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
