"""Saliency maps: shape, range, finiteness, class dependence on a trained model; the caller's model is untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hemato.cli import main
from hemato.data.imaging import load_array
from hemato.vision.explain import METHODS, colorize, explain, explain_all, maximize_activation, overlay
from hemato.vision.models import cam_layers, last_conv_layer, load_model
from hemato.vision.predict import Predictor

FAST_OPTS = {"max_n": 4, "smooth_samples": 3}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def cell(pbc_mini: Path) -> np.ndarray:
    return load_array(sorted(pbc_mini.glob("EOSINOPHIL/*.jpg"))[0])  # 363×360, not the model size


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_a_unit_heatmap_of_the_image_shape(tiny, cell: np.ndarray, method: str) -> None:
    model, _ = tiny
    heat = explain(model, cell, method, **FAST_OPTS)
    assert heat.shape == cell.shape[:2]
    assert heat.dtype == np.float32
    assert np.isfinite(heat).all()
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.max() > heat.min()  # a trained model highlights something


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus", "layercam"])
def test_heatmaps_differ_between_target_classes(tiny, cell: np.ndarray, method: str) -> None:
    model, card = tiny
    maps = [explain(model, cell, method, target_class=c) for c in range(len(card.classes))]
    differences = [np.abs(maps[0] - m).mean() for m in maps[1:]]
    assert max(differences) > 0.02


def test_default_target_is_the_predicted_class_and_layer_the_last_conv(tiny, cell: np.ndarray) -> None:
    model, card = tiny
    predicted = int(Predictor(model, card.input_size).predict_one(cell).argmax())
    default = explain(model, cell)
    np.testing.assert_allclose(default, explain(model, cell, "gradcam", predicted, last_conv_layer(model)), atol=1e-6)


def test_compiled_gradcam_matches_tf_keras_vis(tiny, cell: np.ndarray) -> None:
    model, card = tiny
    for target in range(len(card.classes)):
        fast = explain(model, cell, "gradcam", target)
        reference = explain(model, cell, "gradcam", target, reference=True)
        assert np.corrcoef(fast.ravel(), reference.ravel())[0, 1] > 0.99


def test_an_earlier_layer_gives_a_different_map(tiny, cell: np.ndarray) -> None:
    model, _ = tiny
    layers = cam_layers(model)
    assert last_conv_layer(model) in layers
    early = explain(model, cell, "gradcam", 0, "block_6_expand_relu")
    late = explain(model, cell, "gradcam", 0)
    assert early.shape == late.shape and np.abs(early - late).mean() > 0.01


def test_the_callers_model_is_never_modified(tiny, cell: np.ndarray) -> None:
    model, card = tiny
    head = model.get_layer("predictions")
    before = Predictor(model, card.input_size).predict_one(cell)
    explain_all(model, cell, target_class=1)
    assert head.activation.__name__ == "softmax"
    after = Predictor(model, card.input_size).predict_one(cell)
    np.testing.assert_allclose(before, after, atol=1e-6)
    assert after.sum() == pytest.approx(1.0, abs=1e-4)


def test_bad_requests_raise_clear_errors(tiny, cell: np.ndarray) -> None:
    model, card = tiny
    with pytest.raises(ValueError, match="Unknown explanation method"):
        explain(model, cell, "magic")
    with pytest.raises(ValueError, match="out of range"):
        explain(model, cell, "gradcam", target_class=len(card.classes))
    with pytest.raises(ValueError, match="not a convolution-map layer"):
        explain(model, cell, "gradcam", layer="predictions")


def test_explain_all_reports_progress(tiny, cell: np.ndarray) -> None:
    model, _ = tiny
    seen = []
    maps = explain_all(model, cell, methods=["gradcam", "layercam"], progress=lambda d, t, label: seen.append((d, t)))
    assert list(maps) == ["gradcam", "layercam"]
    assert seen == [(1, 2), (2, 2)]


def test_overlay_and_colorize(cell: np.ndarray) -> None:
    heat = np.linspace(0, 1, 12 * 10, dtype=np.float32).reshape(12, 10)
    blended = overlay(cell, heat, alpha=0.5)
    assert blended.shape == cell.shape and blended.dtype == np.uint8
    assert np.array_equal(overlay(cell, heat, alpha=0.0), cell)
    jet = colorize(np.array([[0.0, 1.0]]), "jet")
    assert jet[0, 0, 2] > 100 and jet[0, 1, 0] > 100  # blue for cold, red for hot
    with pytest.raises(ValueError, match="colormap"):
        colorize(heat, "rainbow")


def test_activation_maximisation_images(tiny) -> None:
    model, card = tiny
    steps = []
    images = maximize_activation(model, [0, 1], None, steps=2, progress=lambda d, t: steps.append(d))
    assert images.shape == (2, card.input_size, card.input_size, 3) and images.dtype == np.uint8
    assert steps == [1, 2]
    filters = maximize_activation(model, [3], last_conv_layer(model), steps=1)
    assert filters.shape == (1, card.input_size, card.input_size, 3)
    with pytest.raises(ValueError, match="Unit indices"):
        maximize_activation(model, [len(card.classes)], None, steps=1)


def test_cli_explain_writes_an_overlay_png(tiny_model_dir: Path, pbc_mini: Path, tmp_path: Path, capsys) -> None:
    image = sorted(pbc_mini.glob("MONOCYTE/*.jpg"))[0]
    out = tmp_path / "out" / "heat.png"
    args = ["explain", "--model", str(tiny_model_dir), str(image), "--method", "gradcam", "--out", str(out)]
    assert main([*args, "--target", "lymphocyte"]) == 0
    assert "Grad-CAM for LYMPHOCYTE" in capsys.readouterr().out
    written = Image.open(out)
    assert written.size == Image.open(image).size and written.mode == "RGB"
    assert main([*args, "--raw"]) == 0
    assert Image.open(out).mode == "L"
    assert main([*args, "--target", "BASOPHIL"]) == 2
    assert "Unknown class" in capsys.readouterr().err
