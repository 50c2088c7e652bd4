"""Fast predictor: same probabilities as model.predict, any image size in, the CLI, the benchmark's shape."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hemato.bench import bench_one
from hemato.cli import main
from hemato.data.datasets import discover_dataset, load_images
from hemato.data.imaging import load_array, prepare_batch, resize_image
from hemato.vision.models import load_model
from hemato.vision.predict import Predictor, naive_predict


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


def test_fast_path_matches_model_predict_on_real_images(tiny, pbc_mini: Path) -> None:
    model, card = tiny
    ds = discover_dataset(pbc_mini)
    images = load_images(ds.frame["path"].tolist()[::8], card.input_size)
    fast = Predictor(model, card.input_size).predict(images)
    assert fast.shape == (len(images), len(card.classes))
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(fast, naive_predict(model, images), atol=1e-5)


def test_trained_tiny_model_recognises_its_training_cells(tiny, pbc_mini: Path) -> None:
    model, card = tiny
    ds = discover_dataset(pbc_mini)
    probs = Predictor(model, card.input_size).predict(load_images(ds.frame["path"].tolist(), card.input_size))
    truth = np.array([card.classes.index(label) for label in ds.frame["label"]])
    assert (probs.argmax(axis=1) == truth).mean() > 0.7


def test_any_size_and_type_is_resized_inside(tiny, pbc_mini: Path) -> None:
    model, card = tiny
    path = next(pbc_mini.glob("*/*.jpg"))
    full = load_array(path)  # 360×363, not the model size
    predictor = Predictor(model, card.input_size)
    from_array = predictor.predict_one(full)
    from_pil = predictor.predict_one(Image.fromarray(full))
    from_small = predictor.predict([load_array(path, card.input_size)])[0]
    np.testing.assert_allclose(from_array, from_pil, atol=1e-6)
    np.testing.assert_allclose(from_array, from_small, atol=1e-5)
    mixed = predictor.predict([full, Image.fromarray(full).resize((50, 70)), full[..., 0]])
    assert mixed.shape == (3, len(card.classes))
    assert predictor.predict([]).shape == (0, len(card.classes))


def test_resize_and_batch_helpers() -> None:
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    assert resize_image(rgba, 8).shape == (8, 8, 3)
    batch = prepare_batch(np.zeros((2, 8, 8, 3), dtype=np.uint8), 8)
    assert batch.dtype == np.float32 and batch.shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="image array"):
        resize_image(np.zeros((4, 4, 7)), 8)


def test_cli_predict_prints_one_line_per_image_and_csv(tiny_model_dir: Path, pbc_mini: Path, capsys) -> None:
    paths = sorted(pbc_mini.glob("LYMPHOCYTE/*.jpg"))[:2]
    assert main(["predict", "--model", str(tiny_model_dir), *map(str, paths)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("%" in line for line in lines)
    assert main(["predict", "--model", str(tiny_model_dir), "--csv", *map(str, paths)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["image"] for r in rows] == [str(p) for p in paths]
    card_classes = load_model(tiny_model_dir)[1].classes
    for row in rows:
        assert row["predicted"] in card_classes
        assert sum(float(row[c]) for c in card_classes) == pytest.approx(1.0, abs=1e-3)


def test_cli_predict_without_a_model_says_what_to_do(tmp_path: Path, pbc_mini: Path, capsys) -> None:
    path = next(pbc_mini.glob("*/*.jpg"))
    assert main(["predict", "--model", str(tmp_path / "nope"), str(path)]) == 2
    assert "not a HematoVision model folder" in capsys.readouterr().err


def test_bench_one_reports_latencies_for_fast_naive_and_gradcam(tiny) -> None:
    model, card = tiny
    result = bench_one(model, card.input_size, n=3, warmup=1)
    assert result["n"] == 3 and result["input_size"] == card.input_size
    for key in ("tf_function", "naive_model_predict", "gradcam"):
        assert set(result[key]) == {"p50_ms", "p95_ms"}
        assert result[key]["p95_ms"] >= result[key]["p50_ms"]
    naive, fast = result["naive_model_predict"]["p50_ms"], result["tf_function"]["p50_ms"]
    assert result["speedup_tf_function_vs_naive_p50"] == pytest.approx(naive / fast, rel=0.01)
    assert "tflite" not in result  # only measured when an export is given
