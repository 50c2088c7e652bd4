"""Layer list, strongest feature maps, and activation-maximisation jobs cached on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemato import jobs
from hemato.data.imaging import load_array
from hemato.vision.models import last_conv_layer, load_model, model_key
from hemato.vision.neurons import (
    feature_maps,
    job_dir,
    job_images,
    layer_table,
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
    assert job_images(a) == []


def test_run_maximization_stores_the_images(tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    model, card = tiny
    folder = job_dir(tmp_path, tiny_model_dir, None, [0, 1], 2)
    assert job_images(folder) == []
    seen = []
    pictures = run_maximization(model, folder, None, [0, 1], 2, lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]
    assert [unit for unit, _ in pictures] == [0, 1] == [unit for unit, _ in job_images(folder)]
    assert pictures[0][1].shape == (card.input_size, card.input_size, 3) and pictures[0][1].dtype == np.uint8
    with pytest.raises(ValueError, match="Unit indices"):
        run_maximization(model, job_dir(tmp_path, tiny_model_dir, None, [99], 1), None, [99], 1)


def test_the_job_runs_once_on_the_worker_and_is_not_restarted(tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    model, _ = tiny
    layer = last_conv_layer(model)
    folder = job_dir(tmp_path, tiny_model_dir, layer, [0, 5], 2)
    job = start_maximization(tiny_model_dir, folder, layer, [0, 5], 2)
    assert job.kind == "activation_max" and job.queue == "light"
    assert start_maximization(tiny_model_dir, folder, layer, [0, 5], 2).id == job.id
    done = jobs.wait(job.id, timeout=240)
    assert done.state == "done" and (done.done, done.total, done.unit) == (2, 2, "steps"), done.error
    stamp = (folder / "unit_0.png").stat().st_mtime
    assert start_maximization(tiny_model_dir, folder, layer, [0, 5], 2).id == job.id
    assert (folder / "unit_0.png").stat().st_mtime == stamp
    assert np.asarray(job_images(folder)[1][1]).shape[-1] == 3
    failed = jobs.wait(start_maximization(tiny_model_dir, tmp_path / "bad", layer, [10_000], 1).id, timeout=240)
    assert failed.state == "failed" and failed.error.startswith("Unit indices must be in 0..")
