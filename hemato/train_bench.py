"""Training speed figures for ``python -m hemato bench train`` (benchmarks, never timed tests)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hemato.config import get_settings
from hemato.data import discover_dataset
from hemato.train import TrainConfig


def _extraction_rate(backbone: str, paths: list[str], size: int) -> dict[str, float]:
    from hemato.features import cached_features

    settings = get_settings()
    with tempfile.TemporaryDirectory() as cold_cache:
        cached_features(backbone, size, paths[:8], Path(cold_cache), settings.weights_dir)
        start = time.perf_counter()
        cached_features(backbone, size, paths[8:], Path(cold_cache), settings.weights_dir)
        seconds = time.perf_counter() - start
    return {
        "images": len(paths) - 8,
        "seconds": round(seconds, 2),
        "images_per_s": round((len(paths) - 8) / seconds, 1),
    }


def _head_epoch_seconds(train_paths: list[str], labels: np.ndarray, n_classes: int, size: int) -> dict[str, Any]:
    import keras

    from hemato.features import cached_features

    settings = get_settings()
    start = time.perf_counter()
    features, _ = cached_features("mobilenet_v2", size, train_paths, settings.cache_dir, settings.weights_dir)
    load_s = time.perf_counter() - start
    inputs = keras.Input((features.shape[1],))
    outputs = keras.layers.Dense(n_classes, activation="softmax")(keras.layers.Dropout(0.2)(inputs))
    head = keras.Model(inputs, outputs)
    head.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            times.append(time.perf_counter() - self.t)

    head.fit(features, labels, epochs=6, batch_size=128, shuffle=True, callbacks=[Timer()], verbose=0)
    return {
        "train_images": len(train_paths),
        "features_load_or_extract_s": round(load_s, 2),
        "head_epoch_s_median": round(float(np.median(times[1:])), 3),
        "head_first_epoch_s": round(times[0], 3),
    }


def _first_curve_point(data: str, split_csv: str | None) -> dict[str, Any]:
    from hemato.runs import get_run, list_runs, request_stop, run_batches, run_history, submit_run

    config = TrainConfig(data=data, split_csv=split_csv, epochs=5, fine_tune_epochs=0, augment="none")
    start = time.perf_counter()
    run = submit_run(config)
    first_batch = first_epoch = None
    deadline = start + 600
    while time.perf_counter() < deadline and first_epoch is None:
        if first_batch is None and run_batches(run.path):
            first_batch = time.perf_counter() - start
        if run_history(run.path):
            first_epoch = time.perf_counter() - start
        if get_run(run.id).status == "failed":
            break
        time.sleep(0.2)
    request_stop(run.id)
    while any(r.id == run.id and r.status in ("queued", "running") for r in list_runs()):
        time.sleep(0.5)
    return {
        "first_batch_point_s": round(first_batch, 1) if first_batch else None,
        "first_epoch_point_s": round(first_epoch, 1) if first_epoch else None,
    }


def _default_model_from_nothing(data: str) -> dict[str, Any]:
    """Build the default model with an empty feature cache into a throw-away home; report time and scores."""
    import os

    from hemato.commands.train import default_model_config
    from hemato.train import run_training

    with tempfile.TemporaryDirectory() as home:
        previous = os.environ.get("HEMATO_HOME")
        os.environ["HEMATO_HOME"] = home
        try:
            config = dataclasses.replace(default_model_config(data), out=None)
            start = time.perf_counter()
            run_dir = run_training(config, Path(home) / "run")
            seconds = time.perf_counter() - start
        finally:
            if previous is None:
                os.environ.pop("HEMATO_HOME", None)
            else:
                os.environ["HEMATO_HOME"] = previous
        from hemato.models import read_card

        metrics = read_card(run_dir).metrics
    return {
        "seconds": round(seconds, 1),
        "test_accuracy": metrics.get("test_accuracy"),
        "test_macro_f1": metrics.get("test_macro_f1"),
    }


def bench_train(
    data: str | None = None,
    split_csv: str | None = None,
    backbones: tuple[str, ...] = ("mobilenet_v2", "vgg16"),
    sample: int = 256,
    full: bool = False,
) -> dict[str, Any]:
    """Measure training speed on this machine.

    Args:
        data: Dataset (default: the configured one, e.g. PBC).
        split_csv: Optional manifest for ``data``.
        backbones: Backbones whose feature-extraction rate is measured.
        sample: Images used for the extraction rate.
        full: Also build the default model from nothing (several minutes).

    Returns:
        A JSON-able dict of figures.
    """
    import os

    settings = get_settings()
    data = data or str(settings.data_dir)
    ds = discover_dataset(data, split_csv)
    train = ds.subset("train") if "train" in ds.splits else ds
    paths = train.frame["path"].tolist()
    rng = np.random.default_rng(0)
    sample_paths = [paths[i] for i in rng.choice(len(paths), size=min(sample, len(paths)), replace=False)]
    classes = train.classes
    labels = np.array([classes.index(label) for label in train.frame["label"]], dtype=np.int32)
    result: dict[str, Any] = {"data": data, "cpu_count": os.cpu_count()}
    result["feature_extraction"] = {b: _extraction_rate(b, sample_paths, 224) for b in backbones}
    result["head_on_cached_features"] = _head_epoch_seconds(paths, labels, len(classes), 224)
    result["first_curve_point_after_train_features_cached"] = _first_curve_point(data, split_csv)
    if full:
        result["default_model_from_nothing"] = _default_model_from_nothing(data)
    return result
