"""TFLite export of a trained model, a LiteRT predictor, and the Keras-vs-TFLite agreement check."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hemato.predict import ImageLike, prepare_batch

if TYPE_CHECKING:
    import keras

FORMATS = ("tflite",)
TFLITE_FILE = "model.tflite"


def export_tflite(model: keras.Model, out_path: Path) -> Path:
    """Convert ``model`` (float32, batch 1, raw [0, 255] pixels in) to a TFLite flatbuffer at ``out_path``.

    The file is written atomically (temporary name, then rename); returns the path.
    """
    import tensorflow as tf

    size = int(model.input_shape[1])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.tmp.tflite")
    # Keras' own LiteRT export; a hand-made concrete function lost the variables here (NaN outputs).
    spec = tf.TensorSpec((1, size, size, 3), tf.float32, name="image")
    with contextlib.redirect_stdout(io.StringIO()):
        model.export(str(tmp), format="litert", input_signature=[spec], verbose=False)
    tmp.replace(out_path)
    return out_path


class TFLitePredictor:
    """Probabilities from an exported TFLite model via the LiteRT interpreter (``ai-edge-litert``).

    Args:
        path: The ``.tflite`` file.
        num_threads: CPU threads for the interpreter.
    """

    def __init__(self, path: Path, num_threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._lock = threading.Lock()  # one interpreter, shared by every Streamlit session
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.input_size = int(self._input["shape"][1])

    def predict(self, images: np.ndarray | Sequence[ImageLike]) -> np.ndarray:
        """Probabilities (N, C) for a uint8 batch at ``input_size`` or a list of images of any size."""
        batch = prepare_batch(images, self.input_size)
        out = []
        with self._lock:
            for x in batch:
                self._interpreter.set_tensor(self._input["index"], x[None])
                self._interpreter.invoke()
                out.append(np.array(self._interpreter.get_tensor(self._output["index"])[0], dtype=np.float32))
        return np.stack(out) if out else np.zeros((0, int(self._output["shape"][-1])), dtype=np.float32)

    def predict_one(self, image: ImageLike) -> np.ndarray:
        """Probabilities (C,) for one image of any size."""
        return self.predict([image])[0]


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
    from hemato.predict import Predictor

    size = int(model.input_shape[1])
    keras_probs = Predictor(model, size).predict(images)
    lite_probs = TFLitePredictor(tflite_path).predict(images)
    same = int(np.sum(np.argmax(keras_probs, axis=1) == np.argmax(lite_probs, axis=1)))
    n = len(keras_probs)
    diff = float(np.max(np.abs(keras_probs - lite_probs))) if n else 0.0
    return Agreement(n=n, same_class=same, agreement=same / n if n else 1.0, max_abs_prob_diff=diff)
