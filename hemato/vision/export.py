"""TFLite export of a trained model, a LiteRT predictor, and the Keras-vs-TFLite agreement check."""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hemato import jobs
from hemato.files import atomic_path
from hemato.vision.models import load_model, model_key
from hemato.vision.predict import Predictor, TFLitePredictor

if TYPE_CHECKING:
    import keras

FORMATS = ("tflite",)
ENV_TFLITE_EXPORT = "HEMATO_TFLITE_EXPORT"  # "0" stops the app exporting models to TFLite in the background
TFLITE_FILE = "model.tflite"


def export_tflite(model: keras.Model, out_path: Path) -> Path:
    """Convert ``model`` (float32, batch 1, raw [0, 255] pixels in) to a TFLite flatbuffer at ``out_path``.

    The file is written atomically (temporary name, then rename); returns the path.
    """
    import tensorflow as tf

    size = int(model.input_shape[1])
    out_path = Path(out_path)
    # Keras' own LiteRT export; a hand-made concrete function lost the variables here (NaN outputs).
    spec = tf.TensorSpec((1, size, size, 3), tf.float32, name="image")
    with atomic_path(out_path) as tmp, contextlib.redirect_stdout(io.StringIO()):
        model.export(str(tmp), format="litert", input_signature=[spec], verbose=False)
    return out_path


@dataclass
class Agreement:
    """How closely the TFLite model reproduces the Keras model on a set of images."""

    n: int
    same_class: int
    agreement: float
    max_abs_prob_diff: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def check_agreement(model: keras.Model, tflite_path: Path, images: np.ndarray) -> Agreement:
    """Compare top-1 classes and probabilities of ``model`` and its TFLite export on uint8 ``images``."""
    size = int(model.input_shape[1])
    keras_probs = Predictor(model, size).predict(images)
    lite_probs = TFLitePredictor(tflite_path).predict(images)
    same = int(np.sum(np.argmax(keras_probs, axis=1) == np.argmax(lite_probs, axis=1)))
    n = len(keras_probs)
    diff = float(np.max(np.abs(keras_probs - lite_probs))) if n else 0.0
    return Agreement(n=n, same_class=same, agreement=same / n if n else 1.0, max_abs_prob_diff=diff)


def tflite_cache_path(cache_dir: Path, model_dir: Path) -> Path:
    """Where the app keeps the TFLite export of a saved model (changes when the model file changes)."""
    return Path(cache_dir) / "tflite" / f"{model_key(model_dir)}.tflite"


@jobs.job("tflite_export", label="TFLite export")
def tflite_export_job(ctx: jobs.JobContext, model_dir: str, out: str) -> dict[str, Any]:
    """The ``tflite_export`` job: convert a saved model to TFLite at ``out`` (light: it never waits for training)."""
    ctx.set_phase("loading the model")
    model, _ = load_model(Path(model_dir))
    ctx.set_phase("converting to TFLite")
    path = export_tflite(model, Path(out))
    ctx.result_path = str(path)
    return {"bytes": path.stat().st_size}


def start_tflite_export(model_dir: Path, out_path: Path) -> jobs.Job:
    """Export ``model_dir`` to ``out_path`` on the job worker, once per model version; return the job.

    A failed export stays failed for that model version (it is not retried on every page view); the app keeps
    using the compiled Keras graph instead.
    """
    key = model_key(model_dir)
    previous = jobs.find("tflite_export", key)
    if previous is not None and previous.state == "failed":
        return previous
    params = {"model_dir": str(model_dir), "out": str(out_path)}
    label = f"Exporting {Path(model_dir).name} to TFLite"
    return jobs.submit("tflite_export", params, key=key, label=label, force=not Path(out_path).exists())
