"""Layer and neuron views: the layer list, strongest feature maps for an image, activation-maximisation jobs.

Activation maximisation takes minutes on a CPU, so it runs as a background job (a thread) that writes its
progress and results to a folder under ``settings.cache_dir``, keyed by the model file and the request: a
reload, a second tab or another session finds the finished images instead of recomputing them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from hemato.data.imaging import resize_image
from hemato.vision.explain import maximize_activation
from hemato.vision.models import cam_layers, layer_model, model_input_size, model_key

if TYPE_CHECKING:
    import keras

STATUS_FILE = "status.json"
STALE_SECONDS = 120
_THREADS: dict[str, threading.Thread] = {}
_LOCK = threading.Lock()


def layer_table(model: keras.Model) -> pd.DataFrame:
    """One row per layer: position, name, type, output shape, parameter count, trainable."""
    rows = []
    for i, layer in enumerate(model.layers):
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape) if shape is not None and hasattr(shape, "shape") else ()
        rows.append(
            {
                "index": i,
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": str(tuple(None if d is None else int(d) for d in shape)),
                "params": int(layer.count_params()) if layer.built else 0,
                "trainable": bool(layer.trainable),
            }
        )
    return pd.DataFrame(rows, columns=["index", "name", "type", "output_shape", "params", "trainable"])


@dataclass
class FeatureMaps:
    """The strongest channels of one layer for one image."""

    layer: str
    maps: np.ndarray  # (k, h, w) float32 in [0, 1], each map scaled on its own
    channels: list[int]
    strengths: list[float]  # mean activation of each channel
    n_channels: int


def feature_maps(model: keras.Model, image: np.ndarray, layer: str, top: int = 16) -> FeatureMaps:
    """The ``top`` channels of ``layer`` with the highest mean activation for ``image`` (uint8, any size).

    Raises:
        ValueError: ``layer`` has no spatial (4-D) output.
    """
    if layer not in cam_layers(model):
        raise ValueError(f"Layer {layer!r} has no feature maps; pick a layer with a 4-D output.")
    x = resize_image(np.asarray(image), model_input_size(model)).astype(np.float32)[None]
    acts = np.asarray(layer_model(model, layer)(x, training=False))[0]
    means = acts.mean(axis=(0, 1))
    order = [int(c) for c in np.argsort(means)[::-1][: max(1, top)]]
    maps = []
    for c in order:
        m = acts[..., c]
        lo, hi = float(m.min()), float(m.max())
        maps.append((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m))
    return FeatureMaps(layer, np.stack(maps).astype(np.float32), order, [float(means[c]) for c in order], len(means))


# Activation-maximisation jobs -------------------------------------------------------------------------


@dataclass
class JobStatus:
    """What a job folder's ``status.json`` says."""

    state: str  # pending | running | done | error
    done: int = 0
    total: int = 0
    started: float = 0.0
    updated: float = 0.0
    message: str = ""
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left, extrapolated from the pace so far (None before the first step)."""
        if self.state != "running" or self.done == 0:
            return None
        return (self.updated - self.started) / self.done * (self.total - self.done)


def job_dir(cache_dir: Path, model_dir: Path, layer: str | None, units: list[int], steps: int) -> Path:
    """The folder of one activation-maximisation request for one model version."""
    what = "classes" if layer is None else layer
    key = hashlib.sha1(f"{what}|{sorted(units)}|{steps}".encode()).hexdigest()[:10]
    return Path(cache_dir) / "activation_max" / model_key(model_dir) / f"{what}-{key}"


def _write_status(folder: Path, status: JobStatus) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(status)))
    tmp.replace(folder / STATUS_FILE)


def read_status(folder: Path) -> JobStatus | None:
    """The job's status, or None when it never started."""
    try:
        return JobStatus(**json.loads((Path(folder) / STATUS_FILE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def job_images(folder: Path) -> list[tuple[int, np.ndarray]]:
    """(unit, uint8 image) pairs of a finished job, in unit order."""
    out = []
    for path in sorted(Path(folder).glob("unit_*.png"), key=lambda p: int(p.stem.split("_")[1])):
        out.append((int(path.stem.split("_")[1]), np.asarray(Image.open(path).convert("RGB"))))
    return out


def run_maximization(model: keras.Model, folder: Path, layer: str | None, units: list[int], steps: int) -> JobStatus:
    """Compute activation-maximisation images now, recording progress and results in ``folder``."""
    request = {"layer": layer, "units": [int(u) for u in units], "steps": int(steps)}
    status = JobStatus("running", 0, int(steps), time.time(), time.time(), "", request)
    _write_status(folder, status)

    def report(done: int, total: int) -> None:
        status.done, status.total, status.updated = done, total, time.time()
        _write_status(folder, status)

    try:
        images = maximize_activation(model, list(units), layer, steps, progress=report)
        for unit, img in zip(units, images, strict=True):
            Image.fromarray(img).save(folder / f"unit_{int(unit)}.png")
        status.state, status.done, status.updated = "done", int(steps), time.time()
    except Exception as exc:  # noqa: BLE001 - a failed job must say why on the page, never kill the app
        status.state, status.message, status.updated = "error", f"{type(exc).__name__}: {exc}", time.time()
        (folder / "error.txt").write_text(traceback.format_exc())
    _write_status(folder, status)
    return status


def start_maximization(model: keras.Model, folder: Path, layer: str | None, units: list[int], steps: int) -> JobStatus:
    """Start the job in a background thread unless it is finished or already running; return its status.

    A job whose status has not moved for ``STALE_SECONDS`` (the app restarted mid-run) is started again.
    """
    with _LOCK:
        status = read_status(folder)
        thread = _THREADS.get(str(folder))
        alive = thread is not None and thread.is_alive()
        fresh = status is not None and status.state == "running" and time.time() - status.updated < STALE_SECONDS
        if status is not None and (status.state == "done" or alive or fresh):
            return status
        pending = JobStatus("running", 0, int(steps), time.time(), time.time(), "starting", {"layer": layer})
        _write_status(folder, pending)
        thread = threading.Thread(
            target=run_maximization, args=(model, folder, layer, list(units), steps), daemon=True, name="hemato-am"
        )
        _THREADS[str(folder)] = thread
        thread.start()
        return pending
