"""Training core and the background job runner on the real pbc_mini images."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from hemato import jobs
from hemato.config import get_settings
from hemato.data.datasets import DatasetError
from hemato.training.runs import (
    RunError,
    create_run,
    get_run,
    list_runs,
    request_stop,
    run_history,
    run_job,
    submit_run,
    update_run,
)
from hemato.training.train import TrainConfig, class_weights, prepare_data, run_training

TINY = {"input_size": 64, "batch_size": 16, "augment": "light", "patience": 2}


def _wait(run_id: str, states: tuple[str, ...], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = next(r for r in list_runs() if r.id == run_id)
        if run.status in states:
            return run.status
        time.sleep(1)
    worker_log = get_settings().home / "logs" / "worker.log"
    log = worker_log.read_text()[-3000:] if worker_log.exists() else "(no worker log)"
    raise AssertionError(f"run {run_id} never reached {states}; worker log tail:\n{log}")


def test_class_weights_favour_rare_classes() -> None:
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights[1] == pytest.approx(2.0) and weights[0] == pytest.approx(2 / 3)


def test_prepare_data_splits_a_splitless_dataset(pbc_mini: Path) -> None:
    data = prepare_data(TrainConfig(data=str(pbc_mini)))
    assert data.classes == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert len(data.train) + len(data.val) + len(data.test) == 80
    assert set(data.train.frame["path"]).isdisjoint(data.val.frame["path"])


def test_train_test_layout_gets_a_validation_split(pbc_mini: Path, tmp_path: Path) -> None:
    for split, take in (("TRAIN", slice(0, 15)), ("TEST", slice(15, 20))):
        for class_dir in sorted(pbc_mini.iterdir()):
            dst = tmp_path / split / class_dir.name
            dst.mkdir(parents=True)
            for img in sorted(class_dir.glob("*.jpg"))[take]:
                shutil.copy(img, dst / img.name)
    data = prepare_data(TrainConfig(data=str(tmp_path)))
    assert (len(data.train), len(data.val), len(data.test)) == (51, 9, 20)
    assert data.val.classes == data.classes, "the carved validation split is stratified"


def test_run_registry_on_both_databases(database_url: str, pbc_mini: Path) -> None:
    run = create_run(TrainConfig(data=str(pbc_mini), **TINY))
    assert (run.status, run.backbone, run.data) == ("queued", "mobilenet_v2", str(pbc_mini))
    assert run.path.is_dir() and (run.path / "config.json").is_file()
    update_run(run.id, status="done", test_accuracy=0.75, duration_s=12.5)
    [listed] = list_runs()
    assert (listed.id, listed.status, listed.test_accuracy, listed.duration_s) == (run.id, "done", 0.75, 12.5)
    with pytest.raises(RunError, match="No run"):
        get_run("nope")


def test_one_class_or_tiny_class_is_refused_before_starting(database_url: str, pbc_mini: Path, tmp_path: Path) -> None:
    shutil.copytree(pbc_mini / "MONOCYTE", tmp_path / "one" / "MONOCYTE")
    with pytest.raises(DatasetError, match="one class"):
        create_run(TrainConfig(data=str(tmp_path / "one")))
    shutil.copytree(pbc_mini / "MONOCYTE", tmp_path / "two" / "MONOCYTE")
    (tmp_path / "two" / "EOSINOPHIL").mkdir()
    for img in sorted((pbc_mini / "EOSINOPHIL").glob("*.jpg"))[:4]:
        shutil.copy(img, tmp_path / "two" / "EOSINOPHIL" / img.name)
    with pytest.raises(DatasetError, match="Too few training images"):
        create_run(TrainConfig(data=str(tmp_path / "two")))
    assert list_runs() == []


@pytest.mark.slow
def test_background_run_goes_running_to_done(pbc_mini: Path) -> None:
    from hemato.vision.models import load_model

    config = TrainConfig(data=str(pbc_mini), epochs=2, fine_tune_epochs=1, fine_tune_layers=5, **TINY)
    run = submit_run(config)
    assert run.status == "queued" and run.job_id and run_job(run).kind == "train"
    assert _wait(run.id, ("running", "done", "failed")) in ("running", "done")
    assert _wait(run.id, ("done", "failed")) == "done", get_run(run.id).message
    trained = run_job(get_run(run.id))
    assert trained.state == "done" and trained.unit == "images" and trained.result["status"] == "done"
    history = run_history(run.path)
    assert [(r["phase"], r["epoch"]) for r in history][-1] == ("fine-tune", 1.0)
    assert len([r for r in history if r["phase"] == "head"]) >= 1
    model, card = load_model(run.path)
    assert card.classes == config_classes(pbc_mini) and card.metrics["test"]["n"] > 0
    probs = model(np.zeros((1, 64, 64, 3), np.float32)).numpy()
    assert probs.shape == (1, 4) and np.isclose(probs.sum(), 1.0, atol=1e-5)
    finished = get_run(run.id)
    assert finished.best_val_accuracy is not None and finished.duration_s > 0


def config_classes(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir())


@pytest.mark.slow
def test_stop_keeps_the_best_checkpoint(pbc_mini: Path) -> None:
    config = TrainConfig(
        data=str(pbc_mini), backbone="small_cnn", epochs=40, **{**TINY, "augment": "none", "patience": 40}
    )
    run = submit_run(config)
    deadline = time.monotonic() + 240
    while not run_history(run.path) and time.monotonic() < deadline:
        time.sleep(1)
    request_stop(run.id)
    assert _wait(run.id, ("stopped", "done", "failed")) == "stopped", get_run(run.id).message
    assert (run.path / "model.keras").exists()
    assert len(run_history(run.path)) < 40


@pytest.mark.slow
def test_killed_worker_is_marked_failed(pbc_mini: Path) -> None:
    config = TrainConfig(
        data=str(pbc_mini), backbone="small_cnn", epochs=40, **{**TINY, "augment": "none", "patience": 40}
    )
    run = submit_run(config)
    assert _wait(run.id, ("running",)) == "running"
    deadline = time.monotonic() + 240
    while not run_history(run.path) and time.monotonic() < deadline:  # one epoch, so a checkpoint exists
        time.sleep(1)
    os.kill(int(run_job(run).worker.rpartition(":")[2]), signal.SIGKILL)
    assert _wait(run.id, ("failed",), timeout=30) == "failed"
    message = get_run(run.id).message
    assert message.startswith(jobs.DEAD_WORKER) and message.endswith(
        "The best checkpoint so far was kept in the run folder."
    )
    assert (run.path / "checkpoint.keras").exists()


def test_unknown_augmentation_is_refused_before_starting(pbc_mini: Path) -> None:
    with pytest.raises(ValueError, match="bogus"):
        create_run(TrainConfig(data=str(pbc_mini), **{**TINY, "augment": "bogus"}))


def test_crash_inside_training_is_recorded(pbc_mini: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    from hemato.training import train

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash while building")

    monkeypatch.setenv("HEMATO_WORKER", "external")  # run the job here, where build_model is patched
    run = submit_run(TrainConfig(data=str(pbc_mini), **{**TINY, "epochs": 1, "fine_tune_epochs": 0}))
    monkeypatch.setattr(train, "build_model", explode)
    jobs.run_job(run.job_id)
    failed = get_run(run.id)
    assert failed.status == "failed" and failed.message == "simulated crash while building"
    job = run_job(failed)
    assert job.state == "failed" and job.error == "simulated crash while building"
    assert "Traceback" in Path(job.log_path).read_text()


def test_unwritable_run_folder_is_a_clear_error(pbc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hemato.training import runs

    def refuse(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(runs.RunError, match=r"No space left on device.*free disk space"):
        create_run(TrainConfig(data=str(pbc_mini)))


def test_foreground_training_writes_the_same_run_folder(pbc_mini: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=str(pbc_mini), epochs=1, fine_tune_epochs=0, out=str(tmp_path / "models" / "m"), **TINY)
    run_dir = run_training(config, tmp_path / "run")
    assert {"model.keras", "model_card.json", "history.csv", "config.json"} <= {p.name for p in run_dir.iterdir()}
    assert (tmp_path / "models" / "m" / "model.keras").exists()


def test_training_from_random_weights_trains_the_backbone(pbc_mini: Path, tmp_path: Path) -> None:
    import keras

    from hemato.vision.models import backbone_layers, build_model, load_model

    config = TrainConfig(data=str(pbc_mini), weights=None, epochs=1, fine_tune_epochs=0, **TINY)
    run_dir = run_training(config, tmp_path / "run")
    trained, card = load_model(run_dir)
    assert card.weights == "random init"
    keras.utils.set_random_seed(config.seed)  # the same initial weights run_training started from
    initial, _ = build_model(config.backbone, card.classes, config.size, weights=None)
    convs = [layer.name for layer in backbone_layers(trained) if isinstance(layer, keras.layers.Conv2D)]
    changed = [
        name
        for name in convs
        if not np.allclose(trained.get_layer(name).get_weights()[0], initial.get_layer(name).get_weights()[0])
    ]
    assert len(changed) == len(convs), f"{len(convs) - len(changed)} backbone convolutions never trained"
