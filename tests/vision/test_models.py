"""Flat models, frozen batch norm, offline ImageNet weights, save/load with a model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemato.vision.models import (
    ModelCard,
    ModelLoadError,
    WeightsUnavailableError,
    build_model,
    last_conv_layer,
    list_models,
    load_model,
    save_model,
    set_trainable,
)
from tests.conftest import WEIGHTS_DIR


def _is_flat(model) -> bool:
    import keras

    return not any(isinstance(layer, keras.Model) for layer in model.layers)


@pytest.mark.parametrize(("backbone", "conv"), [("mobilenet_v2", "out_relu"), ("vgg16", "block5_conv3")])
def test_transfer_models_are_flat(backbone: str, conv: str) -> None:
    model, source = build_model(backbone, ["A", "B", "C"], input_size=64, weights=None)
    assert _is_flat(model)
    assert model.output.shape[-1] == 3
    assert last_conv_layer(model) == conv
    assert source == "random init"
    out = model(np.zeros((2, 64, 64, 3), np.float32)).numpy()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_small_cnn_trains_from_scratch() -> None:
    model, source = build_model("small_cnn", 5, input_size=32)
    assert _is_flat(model) and "scratch" in source
    assert model.output.shape[-1] == 5


def test_fine_tuning_keeps_batch_norm_frozen() -> None:
    import keras

    model, _ = build_model("mobilenet_v2", 2, input_size=32, weights=None, fine_tune_layers=20)
    trainable = [layer for layer in model.layers if layer.trainable and layer.weights]
    assert any(layer.name.startswith("Conv_1") for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    assert not model.get_layer("Conv1").trainable
    set_trainable(model, 0)
    assert [layer.name for layer in model.layers if layer.trainable and layer.weights] == ["predictions"]


def test_missing_weights_give_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError, match="HEMATO_WEIGHTS_DIR"):
        build_model("mobilenet_v2", 2, input_size=32, weights="imagenet", weights_dir=tmp_path)


@pytest.mark.slow
def test_shared_imagenet_weights_recognise_a_cat() -> None:
    """The local file is really loaded: the full MobileNetV2 calls chelsea() a cat, random weights would not."""
    import keras
    from PIL import Image
    from skimage import data

    full = keras.applications.MobileNetV2(weights=None, include_top=True)
    full.load_weights(str(WEIGHTS_DIR / "mobilenet_v2_1.0_224_imagenet.weights.h5"))
    img = np.asarray(Image.fromarray(data.chelsea()).resize((224, 224)), dtype=np.float32)
    probs = full(keras.applications.mobilenet_v2.preprocess_input(img[None])).numpy()[0]
    labels = (WEIGHTS_DIR / "imagenet_labels.txt").read_text().splitlines()[1:]
    top = labels[int(np.argmax(probs))].lower()
    assert "cat" in top or top == "tabby", top

    ours, source = build_model("mobilenet_v2", 2, input_size=224, weights_dir=WEIGHTS_DIR)
    assert "local file" in source
    np.testing.assert_allclose(
        ours.get_layer("Conv_1").get_weights()[0], full.get_layer("Conv_1").get_weights()[0], atol=0
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model, _ = build_model("vgg16", ["A", "B"], input_size=32, weights=None)
    card = ModelCard("vgg16", ["A", "B"], 32, "vgg16", "random init", data_source="unit test")
    save_model(model, card, tmp_path / "m")
    loaded, loaded_card = load_model(tmp_path / "m")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x).numpy(), loaded(x).numpy(), atol=1e-6)
    assert loaded_card.classes == ["A", "B"] and loaded_card.versions["keras"]
    assert [p.name for p, c in list_models(tmp_path)] == ["m"]


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    model, _ = build_model("small_cnn", 2, input_size=32)
    save_model(model, ModelCard("small_cnn", ["A", "B"], 32, "x", "y"), tmp_path / "m")
    (tmp_path / "m" / "model.keras").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model_card.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="damaged"):
        load_model(tmp_path / "m")
    assert list_models(tmp_path)[0][1] is None
