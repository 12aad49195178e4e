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


def eval_transform(processor: CageImageProcessor) -> v2.Compose:
    """Resize (the processor's size and resampling) -> float [0, 1] -> Normalize(processor mean/std).

    Input: an RGB PIL image (see ``to_rgb``). Output: ``(3, H, W)`` float32, equal to
    ``processor(image)["pixel_values"][0]``.
    """
    size, interpolation = _geometry(processor)
    return v2.Compose([v2.Resize(size, interpolation=interpolation), *_normalize(processor)])


def train_transform(processor: CageImageProcessor) -> v2.Compose:
    """The CAGE training augmentation (paper Sec. 4 / the authors' scripts), in their order, at the model size.

    Resize to the processor's size, then RandomHorizontalFlip(0.5), RandomGrayscale(0.01),
    RandomRotation(10 degrees), ColorJitter(brightness 0.2, contrast 0.2, saturation 0.2, hue 0.1),
    RandomPerspective(distortion 0.2, p 0.5), to float [0, 1], Normalize(processor mean/std),
    RandomErasing(p 0.5, scale (0.02, 0.2), ratio (0.3, 3.3), random values). The initial Resize is ours:
    the authors' AffectNet crops were already 224 x 224.

    Randomness comes from torch's generator; [`BatchTransform`] seeds it per example. Output: ``(3, H, W)``
    float32.
    """
    size, interpolation = _geometry(processor)
    return v2.Compose(
        [
            v2.Resize(size, interpolation=interpolation),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomGrayscale(p=0.01),
            v2.RandomRotation(degrees=10),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
            v2.RandomPerspective(distortion_scale=0.2, p=0.5),
            *_normalize(processor),
            v2.RandomErasing(p=0.5, scale=(0.02, 0.2), ratio=(0.3, 3.3), value="random"),
        ]
    )


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
        seed: with ``random=True``, each example's augmentation is drawn from its own generator seeded by
            ``(seed, epoch, index)`` (``index`` = the ``_index`` column): the same crop in every run, on any
            number of processes or workers, and after a resume, whatever was prefetched. Set ``epoch`` before
            each epoch. Torch's global generator is left untouched.

    A call returns ``pixel_values`` (tensor, or ``None`` where the image could not be decoded: logged with
    its ``source_id``), ``labels``, ``regression_labels`` and ``source_id``.
    """

    def __init__(
        self, transform: Callable, label_column: str, regression_targets: Sequence[str], seed: int | None = None
    ):
        self.transform = transform
        self.label_column = label_column
        self.regression_targets = list(regression_targets)
        self.seed = seed
        self.epoch = 0

    def _apply(self, cell: Any, index: int | None) -> torch.Tensor:
        image = decode_image(cell)
        if self.seed is None or index is None:
            return self.transform(image)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + self.epoch * 7_919) * 1_000_000_007 + int(index)) % 2**63)
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
        return {
            "pixel_values": pixel_values,
            "labels": batch[self.label_column],
            "regression_labels": [list(values) for values in zip(*(batch[t] for t in self.regression_targets))],
            "source_id": ids,
        }


def collate_examples(examples: list[dict[str, Any]], multi_label: bool) -> dict[str, Any]:
    """Stack examples into a batch, leaving out those whose image failed to decode.

    Returns:
        ``pixel_values`` ``(V, 3, H, W)`` for the V decodable examples; for ALL B examples of the batch,
        ``labels`` ``(B,)`` long (or ``(B, C)`` float multi-hot), ``regression_labels`` ``(B, R)`` float32 and
        ``valid`` ``(B,)`` bool (False where the image failed); ``num_failed`` (int) and ``failed_ids``.
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
    return batch
