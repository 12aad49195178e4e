"""The paper's training augmentation and the evaluation transform (torchvision transforms v2), applied
lazily to a ``datasets.Dataset`` with ``with_transform``.

Both transforms read size, resampling, rescaling and mean/std from the model's ``CageImageProcessor`` (the
one owner of framing, resize and normalisation; nothing here is a literal), so the evaluation transform gives
the processor's ``pixel_values`` exactly (tested) and training sees the same geometry and normalisation as
inference. The crops themselves were cut by the processor too (``cage prepare`` uses its ``crop_annotation``).
The augmentation runs after the resize, in the paper's order.

Images are decoded here, not by ``datasets``: the ``image`` column is cast to ``Image(decode=False)`` so that
one corrupt file yields ``None`` for that example (counted and dropped by [`collate_examples`]) instead of
an exception that stops training. Nothing is ever replaced by a placeholder image.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from ..image_processing_cage import CageImageProcessor, to_rgb

logger = logging.getLogger(__name__)

_PIL_TO_TORCHVISION = {
    Image.Resampling.NEAREST: InterpolationMode.NEAREST,
    Image.Resampling.BILINEAR: InterpolationMode.BILINEAR,
    Image.Resampling.BICUBIC: InterpolationMode.BICUBIC,
    Image.Resampling.LANCZOS: InterpolationMode.LANCZOS,
    Image.Resampling.BOX: InterpolationMode.BOX,
    Image.Resampling.HAMMING: InterpolationMode.HAMMING,
}


def _check_processor(processor: CageImageProcessor) -> None:
    """Raise ``ValueError`` where the processor asks for a step these transforms do not reproduce."""
    if not processor.do_resize:
        raise ValueError("the processor has do_resize=False; training needs crops resized to the model's size")
    if processor.do_rescale and abs(float(processor.rescale_factor) - 1 / 255) > 1e-12:
        raise ValueError(f"the processor's rescale_factor {processor.rescale_factor} is not 1/255 (8-bit images)")


def _normalize(processor: CageImageProcessor) -> list:
    """To float (scaled to [0, 1] when the processor rescales), then Normalize(mean, std) when it normalises."""
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=bool(processor.do_rescale))]
    if processor.do_normalize:
        steps.append(v2.Normalize(mean=list(processor.image_mean), std=list(processor.image_std)))
    return steps


def _geometry(processor: CageImageProcessor) -> tuple[tuple[int, int], InterpolationMode]:
    _check_processor(processor)
    size = processor.size
    height, width = (size["height"], size["width"]) if isinstance(size, dict) else (size.height, size.width)
    resample = Image.Resampling(
        int(processor.resample if processor.resample is not None else Image.Resampling.BILINEAR)
    )
    return (int(height), int(width)), _PIL_TO_TORCHVISION[resample]


def _training_faces(processor: CageImageProcessor) -> list:
    """The processor's own step that makes a crop look like the training faces (gray, ``source_resolution``),
    where it has one; PIL in, PIL out (``FramingPolicy.match_training_faces``)."""
    return [v2.Lambda(processor.match_training_faces)] if processor.matches_training_faces else []


def eval_transform(processor: CageImageProcessor) -> v2.Compose:
    """[Gray / ``source_resolution`` as the processor's ``match_training_faces``] -> Resize (the processor's size
    and resampling) -> float [0, 1] -> Normalize(processor mean/std).

    Input: an RGB PIL image (see ``to_rgb``). Output: ``(3, H, W)`` float32, equal to
    ``processor(image)["pixel_values"][0]``.
    """
    size, interpolation = _geometry(processor)
    return v2.Compose([*_training_faces(processor), v2.Resize(size, interpolation=interpolation), *_normalize(processor)])


AUGMENTATIONS = ("paper", "ferplus", "none")


def train_transform(processor: CageImageProcessor, augmentation: str = "paper") -> v2.Compose:
    """The training transform at the model size: the processor's own steps, then an augmentation.

    [Gray / ``source_resolution`` as the processor's ``match_training_faces``], Resize to the processor's size,
    then by ``augmentation``:

    - ``"paper"``: the CAGE training augmentation (paper Sec. 4 / the authors' scripts), in their order:
      RandomHorizontalFlip(0.5), RandomGrayscale(0.01), RandomRotation(10 degrees), ColorJitter(brightness 0.2,
      contrast 0.2, saturation 0.2, hue 0.1), RandomPerspective(distortion 0.2, p 0.5), to float [0, 1],
      Normalize(processor mean/std), RandomErasing(p 0.5, scale (0.02, 0.2), ratio (0.3, 3.3), random values).
      The initial Resize is ours: the authors' AffectNet crops were already 224 x 224.
    - ``"ferplus"``: for small gray faces trained from scratch (cage's FER+ recipe, README "The bundled
      model"): RandomHorizontalFlip(0.5), RandomAffine(rotation 10 degrees, translation 10 %, scale 0.9-1.1),
      ColorJitter(brightness 0.3, contrast 0.3), to float, Normalize, RandomErasing as above. FER2013's crops
      are tight and loosely centred (the translation and scale jitter cover the detector's framing spread);
      colour jitter of saturation and hue does nothing to gray faces.
    - ``"none"``: the evaluation transform.

    Randomness comes from torch's generator; [`BatchTransform`] seeds it per example. Output: ``(3, H, W)``
    float32.

    Raises:
        ValueError: unknown ``augmentation``.
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    if augmentation == "none":
        return eval_transform(processor)
    size, interpolation = _geometry(processor)
    erasing = v2.RandomErasing(p=0.5, scale=(0.02, 0.2), ratio=(0.3, 3.3), value="random")
    if augmentation == "paper":
        steps = [
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomGrayscale(p=0.01),
            v2.RandomRotation(degrees=10),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
            v2.RandomPerspective(distortion_scale=0.2, p=0.5),
        ]
    else:
        steps = [
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
            v2.ColorJitter(brightness=0.3, contrast=0.3),
        ]
    resize = v2.Resize(size, interpolation=interpolation)
    return v2.Compose([*_training_faces(processor), resize, *steps, *_normalize(processor), erasing])


def decode_image(value: Any) -> Image.Image:
    """Decode a ``datasets`` image cell (``{"bytes", "path"}`` dict, or a PIL image) to upright RGB.

    Raises:
        OSError: the bytes or file cannot be read as an image; the message names the path when known.
    """
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        try:
            image = Image.open(io.BytesIO(data)) if data is not None else Image.open(path)
            image.load()
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            raise OSError(f"{path or 'embedded image'}: cannot decode image ({error})") from error
    else:
        raise OSError(f"not an image cell: {type(value).__name__}")
    return to_rgb(image)


class BatchTransform:
    """The function given to ``Dataset.with_transform``: decodes and transforms images, collects labels.

    Args:
        transform: image transform (``train_transform``/``eval_transform``), PIL RGB -> ``(3, H, W)`` tensor.
        label_column: ``"label"`` (class index) or ``"labels"`` (EMOTIC multi-hot).
        regression_targets: columns collected into ``regression_labels``, in order ([-1, 1]).
        soft_label_column: a column of class probabilities (FER+'s ``soft_label``), collected into
            ``soft_labels``; ``None``: none.
        seed: with ``random=True``, each example's augmentation is drawn from its own generator seeded by
            ``(seed, epoch, index)`` (``index`` = the ``_index`` column): the same crop in every run, on any
            number of processes or workers, and after a resume, whatever was prefetched. Set ``epoch`` before
            each epoch. Torch's global generator is left untouched.

    A call returns ``pixel_values`` (tensor, or ``None`` where the image could not be decoded: logged with
    its ``source_id``), ``labels``, ``regression_labels`` and ``source_id``.
    """

    def __init__(
        self,
        transform: Callable,
        label_column: str,
        regression_targets: Sequence[str],
        seed: int | None = None,
        soft_label_column: str | None = None,
    ):
        self.transform = transform
        self.label_column = label_column
        self.soft_label_column = soft_label_column
        self.regression_targets = list(regression_targets)
        self.seed = seed
        self.epoch = 0

    def _apply(self, cell: Any, index: int | None) -> torch.Tensor:
        image = decode_image(cell)
        if self.seed is None or index is None:
            return self.transform(image)
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed would also queue a seeding of every lazy accelerator
            # (CUDA/XPU/MTIA builds), with a formatted stack each time: half the data time, and a queue that
            # grows by one entry per example until an accelerator is initialised.
            torch.default_generator.manual_seed(
                ((self.seed * 1_000_003 + self.epoch * 7_919) * 1_000_000_007 + int(index)) % 2**63
            )
            return self.transform(image)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        count = len(batch["image"])
        ids = batch.get("source_id") or [None] * count
        indices = batch.get("_index") or [None] * count
        pixel_values = []
        for cell, source_id, index in zip(batch["image"], ids, indices):
            try:
                pixel_values.append(self._apply(cell, index))
            except OSError as error:
                logger.warning("skipping example %s: %s", source_id, error)
                pixel_values.append(None)
        columns = {
            "pixel_values": pixel_values,
            "labels": batch[self.label_column],
            "regression_labels": [list(values) for values in zip(*(batch[t] for t in self.regression_targets))],
            "source_id": ids,
        }
        if self.soft_label_column is not None:
            columns["soft_labels"] = batch[self.soft_label_column]
        return columns


def collate_examples(examples: list[dict[str, Any]], multi_label: bool) -> dict[str, Any]:
    """Stack examples into a batch, leaving out those whose image failed to decode.

    Returns:
        ``pixel_values`` ``(V, 3, H, W)`` for the V decodable examples; for ALL B examples of the batch,
        ``labels`` ``(B,)`` long (or ``(B, C)`` float multi-hot), ``regression_labels`` ``(B, R)`` float32 and
        ``valid`` ``(B,)`` bool (False where the image failed); ``num_failed`` (int) and ``failed_ids``; where the
        examples carry them, ``soft_labels`` ``(B, L)`` float32 class probabilities.
        Training uses only the valid rows; evaluation keeps the B rows aligned with the sampler so that
        ``gather_for_metrics`` removes exactly its padding, then drops the invalid rows.
    """
    valid = torch.tensor([example["pixel_values"] is not None for example in examples], dtype=torch.bool)
    images = [example["pixel_values"] for example in examples if example["pixel_values"] is not None]
    labels = [example["labels"] for example in examples]
    batch = {
        "pixel_values": torch.stack(images) if images else torch.empty(0),
        "labels": torch.tensor(labels, dtype=torch.float32 if multi_label else torch.long),
        "regression_labels": torch.tensor([example["regression_labels"] for example in examples], dtype=torch.float32),
        "valid": valid,
        "num_failed": int((~valid).sum()),
        "failed_ids": [example["source_id"] for example in examples if example["pixel_values"] is None],
    }
    if examples and "soft_labels" in examples[0]:
        batch["soft_labels"] = torch.tensor([example["soft_labels"] for example in examples], dtype=torch.float32)
    return batch
