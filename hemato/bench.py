"""Speed figures for ``python -m hemato bench train|predict|explore``: the one place timings are measured.

Benchmarks print JSON; tests never time anything.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hemato import jobs
from hemato.config import get_settings
from hemato.data.datasets import DatasetError, discover_dataset, load_images
from hemato.data.explore import build_stats, class_summary, find_duplicates, load_stats, mean_histograms, scan_frame
from hemato.training.runs import get_run, refresh_run, request_stop, run_batches, run_history, submit_run
from hemato.training.train import TrainConfig, default_model_config, run_training
from hemato.vision.explain import explain
from hemato.vision.export import export_tflite
from hemato.vision.features import cached_features
from hemato.vision.models import MODEL_FILE, build_model, get_backbone, list_models, load_model, read_card
from hemato.vision.predict import Predictor, naive_predict

if TYPE_CHECKING:
    import keras


def _extraction_rate(backbone: str, paths: list[str], size: int) -> dict[str, float]:

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
    """Seconds from submitting a run (a cold job worker starts too) to its first batch and epoch curve points."""
    config = TrainConfig(data=data, split_csv=split_csv, epochs=5, fine_tune_epochs=0, augment="none")
    start = time.perf_counter()
    run = submit_run(config)
    first_batch = first_epoch = None
    deadline = start + 600
    try:
        while time.perf_counter() < deadline and first_epoch is None:
            if first_batch is None and run_batches(run.path):
                first_batch = time.perf_counter() - start
            if run_history(run.path):
                first_epoch = time.perf_counter() - start
            if refresh_run(get_run(run.id)).status == "failed":
                break
            time.sleep(0.2)
        request_stop(run.id)
        jobs.wait(run.job_id, timeout=600)
    finally:
        jobs.stop_spawned_workers()
    return {
        "first_batch_point_s": round(first_batch, 1) if first_batch else None,
        "first_epoch_point_s": round(first_epoch, 1) if first_epoch else None,
    }


def _default_model_from_nothing(data: str) -> dict[str, Any]:
    """Build the default model with an empty feature cache into a throw-away home; report time and scores."""
    import os

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


def _percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def _bench_images(size: int, count: int) -> list[np.ndarray]:
    """Real cell images when a dataset is configured (random pixels otherwise), at ``size``."""
    settings = get_settings()
    try:
        if settings.data_dir is None:
            raise DatasetError("no data")
        frame = discover_dataset(settings.data_dir).frame
        paths = frame["path"].sample(n=min(count, len(frame)), random_state=0).tolist()
        return list(load_images(paths, size))
    except (DatasetError, OSError):
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def _bench_model(backbone: str, model_dir: Path | None) -> tuple[keras.Model, int, str]:
    """A trained model of ``backbone`` if one is found, else a freshly built one with ImageNet weights."""
    settings = get_settings()
    candidates = [Path(model_dir)] if model_dir else []
    candidates += [path for path, card in list_models(settings.models_dir) if card is not None]
    for path in candidates:
        if (path / MODEL_FILE).is_file() and read_card(path).backbone == backbone:
            model, card = load_model(path)
            return model, card.input_size, f"trained model {path}"
    size = get_backbone(backbone).default_size
    model, source = build_model(backbone, 4, size, weights_dir=settings.weights_dir)
    return model, size, f"untrained head, {source}"


def _timed(fn: Any, arg: Any) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def bench_one(
    model: keras.Model, size: int, n: int = 30, warmup: int = 3, tflite_path: Path | None = None
) -> dict[str, Any]:
    """Time single-image predict (tf.function, TFLite if given, and ``model.predict``, interleaved) and Grad-CAM."""
    images = _bench_images(size, max(n, 1))
    paths: dict[str, Any] = {"tf_function": Predictor(model, size).predict_one}
    if tflite_path is not None:
        paths["tflite"] = Predictor(model, size, tflite_path).predict_one
    paths["naive_model_predict"] = lambda img: naive_predict(model, img[None])
    paths["gradcam"] = lambda img: explain(model, img, "gradcam")
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(warmup + n):
        img = images[i % len(images)]
        for name, fn in paths.items():
            elapsed = _timed(fn, img)
            if i >= warmup:
                times[name].append(elapsed)
    result: dict[str, Any] = {"input_size": size, "n": n}
    result.update({name: _percentiles(values) for name, values in times.items()})
    naive = result["naive_model_predict"]["p50_ms"]
    for name in ("tf_function", "tflite"):
        if name in result:
            result[f"speedup_{name}_vs_naive_p50"] = round(naive / max(result[name]["p50_ms"], 1e-6), 2)
    return result


def bench_predict(
    model_dir: Path | None = None, n: int = 30, backbones: Sequence[str] = ("mobilenet_v2", "vgg16")
) -> dict[str, Any]:
    """Benchmark single-image prediction and Grad-CAM for each backbone; JSON-able results.

    Args:
        model_dir: A trained model to use for its backbone (others come from ``models_dir`` or are built fresh:
            latency does not depend on training).
        n: Timed repetitions per measurement.
        backbones: Architectures to measure.

    Returns:
        ``{"goals": ..., "<backbone>": {"source", "tf_function", "tflite", "naive_model_predict", "gradcam",
        "speedup_*_vs_naive_p50", ...}}``; p50/p95 times in milliseconds, warm.
    """
    import os

    import tensorflow as tf

    results: dict[str, Any] = {
        "cpu_threads": os.cpu_count(),
        "tensorflow": tf.__version__,
        "goals": "MobileNetV2 warm: fast predict <= 30 ms p50, >= 5x faster than model.predict, Grad-CAM <= 150 ms",
        "app_fast_path": "tflite once the model's TFLite file is cached (exported in the background), else tf_function",
    }
    import tempfile

    for backbone in backbones:
        model, size, source = _bench_model(backbone, model_dir)
        with tempfile.TemporaryDirectory() as tmp:
            lite = export_tflite(model, Path(tmp) / "model.tflite")
            results[backbone] = {"source": source, **bench_one(model, size, n, tflite_path=lite)}
    return results


def bench_explore(dataset_path: Path | None = None, cache_dir: Path | None = None) -> dict[str, float]:
    """Time the explorer's cold cache build and its warm load (stats + summaries + duplicates) on a dataset.

    Args:
        dataset_path: Dataset folder (default: the configured one).
        cache_dir: Cache folder to build into (default: a fresh temporary folder, so the build is cold).

    Returns:
        ``images``, ``cold_build_s`` and ``warm_load_s``.
    """
    import tempfile

    path = dataset_path or get_settings().data_dir
    if path is None:
        raise ValueError("No dataset configured: set HEMATO_DATA_DIR or pass a dataset folder.")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(cache_dir) if cache_dir else Path(tmp)
        frame = scan_frame(discover_dataset(path))
        start = time.perf_counter()
        build_stats(frame, cache)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        stats = load_stats(frame, cache)
        assert stats is not None
        class_summary(stats)
        mean_histograms(stats)
        find_duplicates(stats)
        warm = time.perf_counter() - start
    return {"images": float(len(frame)), "cold_build_s": round(cold, 2), "warm_load_s": round(warm, 3)}
