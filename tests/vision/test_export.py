"""TFLite export: the LiteRT model agrees with Keras on pbc_mini; the CLI writes and checks it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hemato import jobs
from hemato.cli import main
from hemato.data.datasets import discover_dataset, load_images
from hemato.vision.export import check_agreement, export_tflite, start_tflite_export, tflite_cache_path
from hemato.vision.models import load_model
from hemato.vision.predict import Predictor, TFLitePredictor

pytestmark = pytest.mark.slow


def test_tflite_agrees_with_keras_on_pbc_mini(tiny_model_dir: Path, pbc_mini: Path, tmp_path: Path) -> None:
    model, card = load_model(tiny_model_dir)
    path = export_tflite(model, tmp_path / "model.tflite")
    assert path.stat().st_size > 1_000_000  # the weights are in the file
    images = load_images(discover_dataset(pbc_mini).frame["path"].tolist(), card.input_size)
    agreement = check_agreement(model, path, images)
    assert agreement.n == 80
    assert agreement.agreement >= 0.99
    assert agreement.max_abs_prob_diff < 1e-3
    lite = TFLitePredictor(path)
    assert lite.input_size == card.input_size
    assert lite.predict_one(images[0]).shape == (len(card.classes),)
    fast = Predictor(model, card.input_size, path)
    assert fast.backend == "tflite"
    reference = Predictor(model, card.input_size).predict(images[:8])
    np.testing.assert_allclose(fast.predict(images[:8]), reference, atol=1e-4)


def test_background_export_runs_once_and_a_failure_is_not_retried(tiny_model_dir: Path, tmp_path: Path) -> None:
    target = tflite_cache_path(tmp_path / "cache", tiny_model_dir)
    job = start_tflite_export(tiny_model_dir, target)
    assert job.kind == "tflite_export" and job.queue == "light"
    assert start_tflite_export(tiny_model_dir, target).id == job.id  # already under way
    done = jobs.wait(job.id, timeout=300)
    assert done.state == "done", done.error
    assert target.is_file() and done.result_path == str(target) and done.result["bytes"] == target.stat().st_size
    assert TFLitePredictor(target).input_size == load_model(tiny_model_dir)[1].input_size
    assert start_tflite_export(tiny_model_dir, target).id == job.id  # done: not exported again

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.keras").write_bytes(b"not a keras file")
    failed = jobs.wait(start_tflite_export(broken, tmp_path / "broken.tflite").id, timeout=300)
    assert failed.state == "failed" and "could not be loaded" in failed.error
    assert start_tflite_export(broken, tmp_path / "broken.tflite").id == failed.id, "a failure is not retried"


def test_cli_export_with_check(tiny_model_dir: Path, pbc_mini: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "exported" / "tiny.tflite"
    args = ["export", "--model", str(tiny_model_dir), "--format", "tflite", "--out", str(out), "--check", str(pbc_mini)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(out) and out.is_file()
    assert summary["agreement"]["agreement"] >= 0.99
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x.txt")]) == 2
    assert ".tflite" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
