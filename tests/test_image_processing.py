"""Preprocessing: exact pixel values, parity with the paper's torchvision transform, colour modes, crops."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from cage import CageImageProcessor
from cage.image_processing_cage import crop_with_padding, square_box, to_rgb

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def test_known_image_exact_values():
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)
    pixels[3, 2] = (10, 128, 250)
    out = CageImageProcessor(size={"height": 4, "width": 4})(Image.fromarray(pixels), return_tensors="pt")
    values = out["pixel_values"]
    assert values.shape == (1, 3, 4, 4) and values.dtype == torch.float32
    expected = (pixels.astype(np.float64) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(values[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    assert values[0, 0, 0, 0].item() == pytest.approx((1.0 - 0.485) / 0.229, abs=1e-6)


def test_matches_paper_torchvision_transform():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(300, 260, 3), dtype=np.uint8))
    ours = CageImageProcessor()(image, return_tensors="pt")["pixel_values"][0]
    paper = transforms.Compose(
        [
            transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.ToTensor(),
            transforms.Normalize(MEAN.tolist(), STD.tolist()),
        ]
    )(image)
    # Both resample with PIL's bilinear filter; only uint8 rounding of the resized image may differ.
    torch.testing.assert_close(ours, paper, rtol=0, atol=1.0 / 255 / 0.224 + 1e-6)
    assert (ours - paper).abs().mean() < 1e-3


def test_colour_modes_become_rgb():
    rgb = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    gray = base.convert("L")
    assert to_rgb(gray).mode == "RGB"
    np.testing.assert_array_equal(np.asarray(to_rgb(gray))[..., 0], np.asarray(gray))
    rgba = base.convert("RGBA")
    np.testing.assert_array_equal(np.asarray(to_rgb(rgba)), rgb)
    cmyk = base.convert("CMYK")
    assert np.abs(np.asarray(to_rgb(cmyk)).astype(int) - rgb).max() <= 1
    sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(to_rgb(sixteen))[..., 1], np.asarray(gray))
    processor = CageImageProcessor(size={"height": 8, "width": 8})
    for image in (gray, rgba, cmyk, sixteen):
        assert processor(image, return_tensors="pt")["pixel_values"].shape == (1, 3, 8, 8)


def test_exif_rotation_is_applied():
    # A 6x4 landscape image stored with EXIF orientation 6 (rotate 90 degrees clockwise to view).
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 255, 255)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif.tobytes())
    with Image.open(io.BytesIO(buffer.getvalue())) as stored:
        upright = to_rgb(stored)
    assert upright.size == (4, 6)  # portrait after rotation
    assert tuple(np.asarray(upright)[0, 3]) == (255, 255, 255)  # top-left moved to top-right


def test_square_box_and_padding():
    assert square_box((10, 20, 100, 80), margin=0.0) == (10, 10, 100, 100)
    assert square_box((10, 20, 100, 100), margin=0.15) == (-5, 5, 130, 130)
    image = Image.fromarray(np.full((50, 40, 3), 200, dtype=np.uint8))
    crop = crop_with_padding(image, (-10, -5, 30, 30))
    array = np.asarray(crop)
    assert crop.size == (30, 30)
    assert (array[:5] == 0).all() and (array[:, :10] == 0).all() and (array[5:, 10:] == 200).all()
    with pytest.raises(ValueError, match="empty"):
        crop_with_padding(image, (0, 0, 0, 10))


def test_crop_policy_is_saved(tmp_path):
    processor = CageImageProcessor(crop_target="body", crop_margin=0.0, size={"height": 96, "width": 96})
    processor.save_pretrained(tmp_path)
    again = CageImageProcessor.from_pretrained(tmp_path)
    assert (again.crop_target, again.crop_margin, again.size.height) == ("body", 0.0, 96)
    with pytest.raises(ValueError, match="crop_target"):
        CageImageProcessor(crop_target="torso")
