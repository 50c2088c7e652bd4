"""What the pretrained network sees: ImageNet top-5 of the original MobileNetV2 (with its 1000-class head).

Teaches what transfer learning starts from: the backbone was trained on everyday objects, not blood cells.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hemato.data.imaging import resize_image
from hemato.vision.models import WeightsUnavailableError

if TYPE_CHECKING:
    import keras

IMAGENET_WEIGHTS = "mobilenet_v2_1.0_224_imagenet.weights.h5"
IMAGENET_LABELS = "imagenet_labels.txt"
IMAGENET_SIZE = 224


def read_labels(weights_dir: Path | None) -> list[str]:
    """The 1000 ImageNet class names in Keras order (the file's line 0, ``background``, is skipped)."""
    path = Path(weights_dir) / IMAGENET_LABELS if weights_dir else None
    if path is None or not path.is_file():
        raise WeightsUnavailableError(
            f"No {IMAGENET_LABELS} in {weights_dir or 'HEMATO_WEIGHTS_DIR (not set)'}; "
            "set HEMATO_WEIGHTS_DIR to the folder holding the offline ImageNet files."
        )
    lines = [line.strip() for line in path.read_text().splitlines()]
    labels = lines[1:] if lines and lines[0].lower() == "background" else lines
    if len(labels) < 1000:
        raise WeightsUnavailableError(f"{path} lists {len(labels)} classes, expected 1000; restore the file.")
    return labels[:1000]


@functools.lru_cache(maxsize=1)
def _load(weights_dir: str | None) -> keras.Model:
    import keras

    path = Path(weights_dir) / IMAGENET_WEIGHTS if weights_dir else None
    if path is not None and path.is_file():
        model = keras.applications.MobileNetV2(weights=None, include_top=True)
        model.load_weights(str(path))
        return model
    try:
        return keras.applications.MobileNetV2(weights="imagenet", include_top=True)
    except Exception as exc:  # any download failure means the same thing to the user
        raise WeightsUnavailableError(
            f"The ImageNet MobileNetV2 is not available: no {IMAGENET_WEIGHTS} in "
            f"{weights_dir or 'HEMATO_WEIGHTS_DIR (not set)'} and the download failed ({type(exc).__name__})."
        ) from exc


def imagenet_model(weights_dir: Path | None) -> keras.Model:
    """The original MobileNetV2 ImageNet classifier (local weights first), loaded once per process; read-only."""
    return _load(str(weights_dir) if weights_dir else None)


def imagenet_top(image: np.ndarray, weights_dir: Path | None, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable ImageNet classes for a uint8 (H, W, 3) image, as (label, probability)."""
    labels = read_labels(weights_dir)
    model = imagenet_model(weights_dir)
    x = resize_image(np.asarray(image), IMAGENET_SIZE).astype(np.float32)[None] / 127.5 - 1.0
    probs = np.asarray(model(x, training=False))[0]
    order = np.argsort(probs)[::-1][:k]
    return [(labels[i], float(probs[i])) for i in order]
