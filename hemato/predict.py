"""Fast inference: a ``tf.function``-compiled forward pass with a fixed input signature, and its benchmark.

``model.predict`` spends 100–300 ms per call on set-up (PITFALLS.md); the app classifies one uploaded image at
a time, so it goes through :class:`Predictor` instead. ``naive_predict`` stays for the side-by-side benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import keras

ImageLike = Image.Image | np.ndarray
ENV_TFLITE_EXPORT = "HEMATO_TFLITE_EXPORT"  # "0" stops the app exporting models to TFLite in the background


def resize_image(image: ImageLike, size: int) -> np.ndarray:
    """A PIL image or (H, W, 3)/(H, W) array as a ``uint8`` (size, size, 3) array, resized like ``load_array``."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"Expected an (H, W, 3) image array, got shape {arr.shape}.")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.shape[:2] == (size, size):
            return arr
        image = Image.fromarray(arr)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def prepare_batch(images: np.ndarray | Sequence[ImageLike], size: int) -> np.ndarray:
    """Stack images into a float32 (N, size, size, 3) batch of raw [0, 255] pixels (the models' input)."""
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:3] == (size, size):
        return images[..., :3].astype(np.float32, copy=False)
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if len(images) == 0:
        return np.zeros((0, size, size, 3), dtype=np.float32)
    return np.stack([resize_image(img, size) for img in images]).astype(np.float32)


class Predictor:
    """Class probabilities through a compiled forward pass; build once per model and reuse.

    Args:
        model: A HematoVision Keras model (raw RGB pixels in, softmax out). Never modified.
        input_size: The model's square input side.
        tflite_path: An exported TFLite file of the same model (``hemato.export``); when given, predictions run
            through LiteRT/XNNPACK, about twice as fast again on a CPU (same classes, probabilities within 1e-5).
    """

    def __init__(self, model: keras.Model, input_size: int, tflite_path: Path | None = None) -> None:
        import tensorflow as tf

        self.model = model
        self.input_size = int(input_size)
        spec = tf.TensorSpec((None, self.input_size, self.input_size, 3), tf.float32, name="image")
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._lite = None
        if tflite_path is not None:
            from hemato.export import TFLitePredictor

            self._lite = TFLitePredictor(tflite_path)
        self.backend = "tflite" if self._lite is not None else "tf.function"

    def predict(self, images: np.ndarray | Sequence[ImageLike], batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, C) for a uint8 batch at ``input_size`` or a list of PIL images/arrays of any size."""
        batch = prepare_batch(images, self.input_size)
        if len(batch) == 0:
            n_classes = int(self.model.output.shape[-1])
            return np.zeros((0, n_classes), dtype=np.float32)
        if self._lite is not None:
            return self._lite.predict(batch)
        parts = [np.asarray(self._forward(batch[i : i + batch_size])) for i in range(0, len(batch), batch_size)]
        return np.concatenate(parts).astype(np.float32)

    def predict_one(self, image: ImageLike) -> np.ndarray:
        """Probabilities (C,) for one image of any size."""
        return self.predict([image])[0]


def naive_predict(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    """``model.predict`` on a float/uint8 batch: the slow reference for the benchmark."""
    return np.asarray(model.predict(np.asarray(batch, dtype=np.float32), verbose=0))


def tflite_cache_path(cache_dir: Path, model_dir: Path) -> Path:
    """Where the app keeps the TFLite export of a saved model (changes when the model file changes)."""
    from hemato.layers import model_cache_key

    return Path(cache_dir) / "tflite" / f"{model_cache_key(model_dir)}.tflite"


def start_tflite_export(model_dir: Path, out_path: Path) -> bool:
    """Export ``model_dir`` to ``out_path`` in a separate process unless done or under way; True if started.

    A separate process keeps the export (~15 s) off the app's shared, read-only model and its threads.
    """
    import subprocess
    import sys

    out_path = Path(out_path)
    marker = out_path.with_suffix(".exporting")
    if out_path.exists() or (marker.exists() and time.time() - marker.stat().st_mtime < 300):
        return False
    out_path.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(model_dir))
    log = out_path.with_suffix(".log").open("w")
    cmd = [sys.executable, "-m", "hemato", "export", "--model", str(model_dir), "--out", str(out_path)]
    from hemato.config import PROJECT_ROOT

    subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True)
    return True


def top_class(probs: np.ndarray, classes: Sequence[str]) -> tuple[str, float]:
    """The most probable class name and its probability."""
    index = int(np.argmax(probs))
    return classes[index], float(probs[index])


def _percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def _bench_images(size: int, count: int) -> list[np.ndarray]:
    """Real cell images when a dataset is configured (random pixels otherwise), at ``size``."""
    from hemato.config import get_settings
    from hemato.data import DatasetError, discover_dataset, load_images

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
    from hemato.config import get_settings
    from hemato.models import MODEL_FILE, build_model, get_backbone, list_models, load_model, read_card

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
    from hemato.explain import explain

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

    from hemato.export import export_tflite

    for backbone in backbones:
        model, size, source = _bench_model(backbone, model_dir)
        with tempfile.TemporaryDirectory() as tmp:
            lite = export_tflite(model, Path(tmp) / "model.tflite")
            results[backbone] = {"source": source, **bench_one(model, size, n, tflite_path=lite)}
    return results
