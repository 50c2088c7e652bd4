"""Layer list, strongest feature maps, and activation-maximisation jobs cached on disk."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from hemato.data.imaging import load_array
from hemato.vision.models import last_conv_layer, load_model, model_key
from hemato.vision.neurons import (
    feature_maps,
    job_dir,
    job_images,
    layer_table,
    read_status,
    run_maximization,
    start_maximization,
)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


def test_layer_table_matches_the_model(tiny) -> None:
    model, card = tiny
    table = layer_table(model)
    assert table["name"].tolist() == [layer.name for layer in model.layers]
    assert int(table["params"].sum()) == model.count_params()
    row = table.set_index("name").loc["predictions"]
    assert row["output_shape"] == f"(None, {len(card.classes)})" and row["type"] == "Dense"
    size = card.input_size
    assert table.set_index("name").loc["image", "output_shape"] == f"(None, {size}, {size}, 3)"


def test_feature_maps_are_the_strongest_channels(tiny, pbc_mini: Path) -> None:
    model, _ = tiny
    image = load_array(next(pbc_mini.glob("*/*.jpg")))
    layer = "block_3_expand_relu"
    fm = feature_maps(model, image, layer, top=8)
    expected = model.get_layer(layer).output.shape
    assert fm.maps.shape == (8, expected[1], expected[2])
    assert fm.n_channels == expected[3]
    assert fm.strengths == sorted(fm.strengths, reverse=True)
    assert fm.maps.min() >= 0 and fm.maps.max() <= 1
    with pytest.raises(ValueError, match="no feature maps"):
        feature_maps(model, image, "predictions")


def test_job_folders_depend_on_model_and_request(tiny_model_dir: Path, tmp_path: Path) -> None:
    a = job_dir(tmp_path, tiny_model_dir, "Conv_1", [1, 2], 10)
    assert a == job_dir(tmp_path, tiny_model_dir, "Conv_1", [2, 1], 10)
    assert a != job_dir(tmp_path, tiny_model_dir, "Conv_1", [1, 2], 20)
    assert a != job_dir(tmp_path, tiny_model_dir, None, [1, 2], 10)
    assert model_key(tiny_model_dir) in str(a)
    assert read_status(a) is None


def test_run_maximization_records_progress_and_images(tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    model, card = tiny
    folder = job_dir(tmp_path, tiny_model_dir, None, [0, 1], 2)
    status = run_maximization(model, folder, None, [0, 1], 2)
    assert status.state == "done" and status.fraction == 1.0
    assert read_status(folder).state == "done"
    pictures = job_images(folder)
    assert [unit for unit, _ in pictures] == [0, 1]
    assert pictures[0][1].shape == (card.input_size, card.input_size, 3)


def test_a_failing_job_records_its_error(tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    model, _ = tiny
    folder = job_dir(tmp_path, tiny_model_dir, None, [99], 1)
    status = run_maximization(model, folder, None, [99], 1)
    assert status.state == "error" and "Unit indices" in status.message


def test_background_job_finishes_and_is_not_restarted(tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    model, _ = tiny
    layer = last_conv_layer(model)
    folder = job_dir(tmp_path, tiny_model_dir, layer, [0, 5], 2)
    start_maximization(model, folder, layer, [0, 5], 2)
    deadline = time.monotonic() + 120
    while (read_status(folder) is None or read_status(folder).state == "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    done = read_status(folder)
    assert done.state == "done", done
    stamp = (folder / "unit_0.png").stat().st_mtime
    again = start_maximization(model, folder, layer, [0, 5], 2)
    assert again.state == "done"
    time.sleep(0.5)
    assert (folder / "unit_0.png").stat().st_mtime == stamp
    assert np.asarray(job_images(folder)[1][1]).shape[-1] == 3
