"""Fast inference: :class:`Predictor` (a compiled forward pass, or LiteRT when the model has a TFLite export).

``model.predict`` spends 100–300 ms per call on set-up (PITFALLS.md); the app classifies one uploaded image at
a time, so it goes through :class:`Predictor` instead. :func:`naive_predict` stays for the side-by-side benchmark.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hemato.data.imaging import ImageLike, prepare_batch
from hemato.vision.models import compiled_forward

if TYPE_CHECKING:
    import keras


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


class Predictor:
    """Class probabilities through a compiled forward pass; build once per model and reuse.

    Args:
        model: A HematoVision Keras model (raw RGB pixels in, softmax out). Never modified.
        input_size: The model's square input side.
        tflite_path: An exported TFLite file of the same model (``hemato.vision.export``); when given, predictions
            run through LiteRT/XNNPACK, about twice as fast again on a CPU (same classes, probabilities within 1e-5).
    """

    def __init__(self, model: keras.Model, input_size: int, tflite_path: Path | None = None) -> None:
        self.model = model
        self.input_size = int(input_size)
        self.forward = compiled_forward(model, self.input_size)
        self._lite = TFLitePredictor(tflite_path) if tflite_path is not None else None
        self.backend = "tflite" if self._lite is not None else "tf.function"

    def predict(self, images: np.ndarray | Sequence[ImageLike], batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, C) for a uint8 batch at ``input_size`` or a list of PIL images/arrays of any size."""
        batch = prepare_batch(images, self.input_size)
        if len(batch) == 0:
            n_classes = int(self.model.output.shape[-1])
            return np.zeros((0, n_classes), dtype=np.float32)
        if self._lite is not None:
            return self._lite.predict(batch)
        parts = [self.forward(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)]
        return np.concatenate(parts).astype(np.float32)

    def predict_one(self, image: ImageLike) -> np.ndarray:
        """Probabilities (C,) for one image of any size."""
        return self.predict([image])[0]


def naive_predict(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    """``model.predict`` on a float/uint8 batch: the slow reference for the benchmark."""
    return np.asarray(model.predict(np.asarray(batch, dtype=np.float32), verbose=0))
