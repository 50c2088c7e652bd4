"""ImageNet top-5 of the original MobileNetV2: labels file, known answers on a cat, and on a blood cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemato.data.imaging import load_array
from hemato.vision.imagenet import imagenet_top, read_labels
from hemato.vision.models import WeightsUnavailableError
from tests.conftest import WEIGHTS_DIR


def test_labels_skip_background_and_use_keras_order() -> None:
    labels = read_labels(WEIGHTS_DIR)
    assert len(labels) == 1000
    assert labels[281].startswith("tabby")
    assert labels[967].startswith("espresso")
    assert "background" not in labels[0].lower()


def test_missing_labels_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="HEMATO_WEIGHTS_DIR"):
        read_labels(tmp_path)


@pytest.mark.slow
def test_top5_knows_a_cat_and_works_on_a_cell(pbc_mini: Path) -> None:
    from skimage.data import chelsea

    top = imagenet_top(chelsea(), WEIGHTS_DIR)
    assert len(top) == 5
    assert top[0][0].split(",")[0] in {"Egyptian cat", "tiger cat", "tabby"}
    probs = np.array([p for _, p in top])
    assert np.all(np.diff(probs) <= 0) and 0 < probs.sum() <= 1.0001
    cell = imagenet_top(load_array(next(pbc_mini.glob("NEUTROPHIL/*.jpg"))), WEIGHTS_DIR, k=3)
    assert len(cell) == 3 and all(isinstance(label, str) and label for label, _ in cell)
