"""Model folders saved by cage 0.1.0 (``tests/fixtures/old_folders``) load and predict as they did then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import face_photo
from PIL import Image

import cage  # noqa: F401  (registers the Auto classes)
from cage.image_processing_cage import to_rgb
from transformers import AutoImageProcessor, AutoModel

OLD_FOLDERS = Path(__file__).resolve().parent / "fixtures" / "old_folders"


@pytest.mark.parametrize("name", ["affectnet8_test_convnext_64", "emotic_test_vit_64"])
def test_old_folder_predicts_as_before(name):
    folder = OLD_FOLDERS / name
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    for expected in json.loads((folder / "expected_outputs.json").read_text()):
        image = to_rgb(Image.open(face_photo(expected["photo"])))
        crop = processor.crop(image, expected["box"])
        assert list(crop.size) == expected["crop_size"]
        with torch.no_grad():
            out = model(**processor([crop], return_tensors="pt"))
        np.testing.assert_allclose(out.logits[0].numpy(), expected["logits"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(out.regression[0].numpy(), expected["regression"], atol=1e-5, rtol=0)
