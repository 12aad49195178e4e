"""Face detection on the shared real photos; YuNet's error paths and box mapping; crops at the border."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cage import CageImageProcessor
from cage.face_detection_cage import (
    DlibHogDetector,
    FaceDetector,
    YuNetDetector,
    create_face_detector,
    resolve_yunet_model,
)
from conftest import face_photo


@pytest.fixture(scope="module")
def dlib_detector() -> DlibHogDetector:
    return DlibHogDetector()


def _detect(name: str, detector: FaceDetector):
    with Image.open(face_photo(name)) as image:
        image = image.convert("RGB")
        return image, detector.detect(image)


def test_two_people_left_and_right(dlib_detector):
    image, faces = _detect("two_people.jpg", dlib_detector)
    assert len(faces) == 2
    (left, right) = [f.clipped_box(image.width, image.height) for f in faces]
    assert left[0] + left[2] <= image.width / 2 < right[0]


@pytest.mark.parametrize("name", ["obama.jpg", "obama_small.jpg", "biden.jpg", "32bit.png"])
def test_one_face(name, dlib_detector):
    assert len(_detect(name, dlib_detector)[1]) == 1


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_face_in_scikit_image_photos(name, dlib_detector):
    data = pytest.importorskip("skimage.data")
    image = Image.fromarray(getattr(data, name)())
    assert dlib_detector.detect(image) == []


def test_box_cut_by_border_is_kept_clipped_and_padded(dlib_detector):
    image, faces = _detect("obama_partial_face.jpg", dlib_detector)
    assert len(faces) == 1 and faces[0].box[0] < 0
    x, y, w, h = faces[0].clipped_box(image.width, image.height)
    assert x == 0 and w > 0 and x + w <= image.width
    # The crop keeps the face centred: the part left of the image is zero padding, the rest is the photo.
    processor = CageImageProcessor()
    left, top, side, _ = processor.crop_box(faces[0].box)
    assert left < 0
    crop = np.asarray(processor.crop(image, faces[0].box))
    assert crop.shape == (side, side, 3)
    assert (crop[:, :-left] == 0).all()
    np.testing.assert_array_equal(crop[:, -left:], np.asarray(image)[top : top + side, : side + left])


def test_downscaled_detection_maps_back_to_original_pixels():
    # Detected at full resolution and at a quarter of it, the boxes agree to within the coarse grid.
    _, full = _detect("obama.jpg", DlibHogDetector(max_side=4096))
    _, small = _detect("obama.jpg", DlibHogDetector(max_side=300))
    assert len(full) == len(small) == 1
    for a, b in zip(full[0].box, small[0].box):
        assert abs(a - b) < 0.12 * full[0].box[2]


class _FixedBoxes(FaceDetector):
    """Reports fixed boxes in working-image pixels and records the working size it saw."""

    def __init__(self, boxes, max_side):
        self.boxes, self.max_side, self.seen = boxes, max_side, None

    def _detect_boxes(self, work):
        self.seen = work.size
        return [(box, 0.9) for box in self.boxes]


def test_working_resolution_mapping_is_exact_per_axis():
    detector = _FixedBoxes([(50.0, 10.0, 20.0, 30.0), (5.0, 60.0, 10.0, 10.0)], max_side=400)
    detector.detect_size = 400  # one downscaled pass (the default "auto" also tiles large images)
    faces = detector.detect(Image.new("RGB", (1000, 333)))
    assert detector.seen == (400, 133)
    sx, sy = 1000 / 400, 333 / 133
    # Sorted left to right, mapped back by each axis' own scale.
    assert [f.box for f in faces] == [
        (5.0 * sx, 60.0 * sy, 10.0 * sx, 10.0 * sy),
        (50.0 * sx, 10.0 * sy, 20.0 * sx, 30.0 * sy),
    ]
    small = _FixedBoxes([(1.0, 2.0, 3.0, 4.0)], max_side=400)
    assert small.detect(Image.new("RGB", (300, 200)))[0].box == (1.0, 2.0, 3.0, 4.0) and small.seen == (300, 200)


def test_unknown_detector_names_choices():
    with pytest.raises(ValueError, match="auto, yunet, dlib, none"):
        create_face_detector("mtcnn")


def test_yunet_without_model_file_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="face_detection_yunet_2023mar.onnx.*--detector-model"):
        create_face_detector("yunet")
    missing = tmp_path / "yunet.onnx"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*does not exist"):
        resolve_yunet_model(missing)


def test_yunet_rejects_a_file_that_is_not_its_model(tmp_path):
    bogus = tmp_path / "yunet.onnx"
    bogus.write_bytes(b"this is not an ONNX model")
    with pytest.raises(ValueError, match="yunet.onnx: OpenCV cannot load it as a YuNet ONNX model"):
        YuNetDetector(bogus)


class _StubYuNet:
    """Stands in for cv2.FaceDetectorYN (no YuNet model file can be obtained offline): records its inputs
    and returns rows in YuNet's documented layout x, y, w, h, 5 landmarks (x, y), score."""

    def __init__(self, rows):
        self.rows, self.calls = rows, []

    def setInputSize(self, size):
        self.calls.append(("size", tuple(size)))

    def detect(self, bgr):
        self.calls.append(("image", bgr.shape, bgr.dtype, tuple(bgr[0, 0])))
        return 1, (None if self.rows is None else np.asarray(self.rows, dtype=np.float32))


def test_yunet_reads_bgr_at_working_size_and_maps_boxes_back():
    detector = YuNetDetector.__new__(YuNetDetector)  # skip loading a model file; test our side of the API
    detector.max_side = detector.detect_size = 200  # one downscaled pass (the default "auto" also tiles)
    row = [40.0, 20.0, 30.0, 36.0] + [0.0] * 10 + [0.95]
    detector._net = _StubYuNet([row, [10.0, 50.0, 20.0, 20.0] + [0.0] * 10 + [0.8]])
    image = Image.new("RGB", (800, 400), (255, 0, 0))  # pure red
    faces = detector.detect(image)
    assert detector._net.calls[0] == ("size", (200, 100))
    assert detector._net.calls[1] == ("image", (100, 200, 3), np.uint8, (0, 0, 255))  # red in BGR order
    assert [f.box for f in faces] == [(40.0, 200.0, 80.0, 80.0), (160.0, 80.0, 120.0, 144.0)]
    assert [round(f.score, 2) for f in faces] == [0.8, 0.95]
    detector._net = _StubYuNet(None)
    assert detector.detect(image) == []
