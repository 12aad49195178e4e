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
