"""Face detection on the shared real photos."""

from __future__ import annotations

import pytest
from PIL import Image

from cage.face_detection_cage import DlibHogDetector, create_face_detector
from conftest import face_photo


def _detect(name: str, **kwargs):
    with Image.open(face_photo(name)) as image:
        image = image.convert("RGB")
        return image, DlibHogDetector(**kwargs).detect(image)


def test_two_people_left_and_right():
    image, faces = _detect("two_people.jpg")
    assert len(faces) == 2
    (left, right) = [f.clipped_box(image.width, image.height) for f in faces]
    assert left[0] + left[2] <= image.width / 2 < right[0]


@pytest.mark.parametrize("name", ["obama.jpg", "obama_small.jpg", "biden.jpg", "32bit.png"])
def test_one_face(name):
    assert len(_detect(name)[1]) == 1


def test_no_face(coffee_image):
    with Image.open(coffee_image) as image:
        assert DlibHogDetector().detect(image.convert("RGB")) == []


def test_box_cut_by_border_is_kept_and_clipped():
    image, faces = _detect("obama_partial_face.jpg")
    assert len(faces) == 1 and faces[0].box[0] < 0
    x, y, w, h = faces[0].clipped_box(image.width, image.height)
    assert x == 0 and w > 0 and x + w <= image.width


def test_downscaled_detection_maps_back_to_original_pixels():
    # Detected at full resolution and at a quarter of it, the boxes agree to within the coarse grid.
    _, full = _detect("obama.jpg", max_side=4096)
    _, small = _detect("obama.jpg", max_side=300)
    assert len(full) == len(small) == 1
    for a, b in zip(full[0].box, small[0].box):
        assert abs(a - b) < 0.12 * full[0].box[2]


def test_unknown_detector_names_choices():
    with pytest.raises(ValueError, match="dlib, none"):
        create_face_detector("mtcnn")
