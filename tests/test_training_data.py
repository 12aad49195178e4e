"""Training data: transforms (paper augmentation, eval == image processor), corrupt images, loss weights."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from fixtures_training import random_affectnet_split, write_affectnet_fixture, write_emotic_fixture
from PIL import Image
from torchvision.transforms import v2
from transformers import AutoImageProcessor

from cage.data import loading as D
from cage.data.transforms import BatchTransform, collate_examples, eval_transform, train_transform



@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    import cage  # noqa: F401

    return AutoImageProcessor.from_pretrained(tiny_model_dir, backend="pil")


def test_eval_transform_equals_the_saved_image_processor(processor):
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (97, 71, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (30, 50), dtype=np.uint8), mode="L").convert("RGB"),
    ]
    expected = processor(images, return_tensors="pt")["pixel_values"]
    transform = eval_transform(processor)
    actual = torch.stack([transform(image) for image in images])
    assert actual.shape == expected.shape == (3, 3, 64, 64)
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-6)


def test_train_transform_is_the_papers_pipeline_in_order(processor):
    steps = train_transform(processor).transforms
    assert [type(t) for t in steps] == [
        v2.Resize,
        v2.RandomHorizontalFlip,
        v2.RandomGrayscale,
        v2.RandomRotation,
        v2.ColorJitter,
        v2.RandomPerspective,
        v2.ToImage,
        v2.ToDtype,
        v2.Normalize,
        v2.RandomErasing,
    ]
    assert steps[1].p == 0.5 and steps[2].p == 0.01 and list(steps[3].degrees) == [-10.0, 10.0]
    assert steps[4].brightness == (0.8, 1.2) and steps[4].hue == (-0.1, 0.1)
    assert steps[5].distortion_scale == 0.2 and steps[5].p == 0.5
    assert steps[9].p == 0.5 and tuple(steps[9].scale) == (0.02, 0.2) and steps[9].value is None  # random values
    assert list(steps[8].mean) == list(processor.image_mean)


def test_augmentation_is_seeded_per_example_and_epoch(processor):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    transform = BatchTransform(train_transform(processor), "label", ["valence", "arousal"], seed=7)
    batch = {"image": [image, image], "label": [0, 1], "valence": [0.1, 0.2], "arousal": [0.3, 0.4], "_index": [5, 6]}
    torch.manual_seed(0)
    first = transform(batch)
    global_state = torch.get_rng_state()
    second = transform(batch)
    assert torch.equal(torch.get_rng_state(), global_state)  # the global generator is untouched
    assert torch.equal(first["pixel_values"][0], second["pixel_values"][0])
    assert not torch.equal(first["pixel_values"][0], first["pixel_values"][1])  # index 5 vs 6
    transform.epoch = 1
    assert not torch.equal(transform(batch)["pixel_values"][0], first["pixel_values"][0])
    assert first["regression_labels"] == [[0.1, 0.3], [0.2, 0.4]] and first["labels"] == [0, 1]


def test_corrupt_images_are_dropped_and_counted_never_replaced(processor):
    split = random_affectnet_split(5, seed=0, corrupt=(1, 3))
    transformed, _ = D.with_cage_transform(split, eval_transform(processor), ["valence", "arousal"])
    examples = [transformed[i] for i in range(5)]
    assert [e["pixel_values"] is None for e in examples] == [False, True, False, True, False]
    batch = collate_examples(examples, multi_label=False)
    assert batch["pixel_values"].shape == (3, 3, 64, 64)
    assert batch["valid"].tolist() == [True, False, True, False, True]
    assert batch["num_failed"] == 2 and batch["failed_ids"] == ["s0-1", "s0-3"]
    assert batch["labels"].tolist() == split["label"]
    torch.testing.assert_close(batch["regression_labels"][:, 0], torch.tensor(split["valence"]))


def test_label_sets_and_loss_weights_from_the_training_split(tmp_path):
    affectnet = datasets.load_from_disk(str(write_affectnet_fixture(tmp_path / "a", train=16, corrupt_train=())))
    assert D.label_set_of(affectnet["train"]) == "affectnet8"
    assert D.loss_weights(affectnet["train"], "affectnet8") == {"class_weights": pytest.approx([1 / 8] * 8)}
    emotic = datasets.load_from_disk(str(write_emotic_fixture(tmp_path / "e")))
    assert D.label_set_of(emotic["train"]) == "emotic"
    positives = np.asarray(emotic["train"]["labels"]).sum(axis=0)
    expected = [(12 - p) / p if p else 1.0 for p in positives]
    assert D.loss_weights(emotic["train"], "emotic") == {"pos_weight": pytest.approx(expected)}
    renamed = affectnet["train"].cast_column("label", datasets.ClassLabel(names=list("abcdefgh")))
    with pytest.raises(ValueError, match="not AffectNet-8/-7"):
        D.label_set_of(renamed)


def test_class_balanced_sampler_is_seeded_and_balanced():
    labels = [0] * 90 + [1] * 10
    sampler = D.ClassBalancedSampler(labels, seed=3)
    first = list(sampler)
    assert first == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    share_minority = np.mean([labels[i] == 1 for i in first])
    assert 0.35 < share_minority < 0.65


def test_transforms_follow_any_processor_settings_not_literals():
    from cage.image_processing_cage import CageImageProcessor

    custom = CageImageProcessor(
        size={"height": 48, "width": 40}, resample=3, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]
    )
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 70, 3), dtype=np.uint8))
    expected = custom([image], return_tensors="pt")["pixel_values"][0]
    actual = eval_transform(custom)(image)
    assert actual.shape == expected.shape == (3, 48, 40)
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-6)
    steps = train_transform(custom).transforms
    assert steps[0].size == [48, 40] and steps[0].interpolation == v2.InterpolationMode.BICUBIC
    assert list(steps[8].mean) == [0.5, 0.4, 0.3] and list(steps[8].std) == [0.2, 0.25, 0.3]
    unnormalised = CageImageProcessor(size={"height": 32, "width": 32}, do_normalize=False)
    want = unnormalised([image], return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(eval_transform(unnormalised)(image), want, rtol=0, atol=2e-6)
    with pytest.raises(ValueError, match="do_resize=False"):
        eval_transform(CageImageProcessor(do_resize=False))
