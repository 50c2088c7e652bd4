"""Layer and neuron views: the layer list, strongest feature maps for an image, activation-maximisation jobs.

Activation maximisation takes minutes on a CPU, so it is the ``activation_max`` job (:mod:`hemato.jobs`, light)
that writes its images to a folder under ``settings.cache_dir``, keyed by the model file and the request: a
reload, a second tab or another session finds the finished images instead of recomputing them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from hemato import jobs
from hemato.data.imaging import resize_image
from hemato.files import atomic_path
from hemato.vision.explain import maximize_activation
from hemato.vision.models import cam_layers, layer_model, load_model_once, model_input_size, model_key

if TYPE_CHECKING:
    import keras

DONE_FILE = "done"


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


def job_dir(cache_dir: Path, model_dir: Path, layer: str | None, units: list[int], steps: int) -> Path:
    """The folder of one activation-maximisation request for one model version."""
    what = "classes" if layer is None else layer
    key = hashlib.sha1(f"{what}|{sorted(units)}|{steps}".encode()).hexdigest()[:10]
    return Path(cache_dir) / "activation_max" / model_key(model_dir) / f"{what}-{key}"


def job_images(folder: Path) -> list[tuple[int, np.ndarray]]:
    """(unit, uint8 image) pairs of a finished request (empty until it finished), in unit order."""
    if not (Path(folder) / DONE_FILE).exists():
        return []
    out = []
    for path in sorted(Path(folder).glob("unit_*.png"), key=lambda p: int(p.stem.split("_")[1])):
        out.append((int(path.stem.split("_")[1]), np.asarray(Image.open(path).convert("RGB"))))
    return out


def run_maximization(
    model: keras.Model, folder: Path, layer: str | None, units: list[int], steps: int, progress: Any = None
) -> list[tuple[int, np.ndarray]]:
    """Compute activation-maximisation images now and store them in ``folder``; return them.

    Raises:
        ValueError: No units, or a unit index beyond the layer's channels.
    """
    images = maximize_activation(model, list(units), layer, steps, progress=progress)
    folder = Path(folder)
    for unit, img in zip(units, images, strict=True):
        with atomic_path(folder / f"unit_{int(unit)}.png") as tmp:
            Image.fromarray(img).save(tmp)
    (folder / DONE_FILE).touch()
    return job_images(folder)


@jobs.job("activation_max", label="Activation maximisation")
def activation_max_job(
    ctx: jobs.JobContext, model_dir: str, folder: str, layer: str | None, units: list[int], steps: int
) -> dict[str, Any]:
    """The ``activation_max`` job: :func:`run_maximization` with progress and cancellation."""

    def report(done: int, total: int) -> None:
        ctx.progress(done, total, "steps", "gradient ascent")
        ctx.check_cancel()

    ctx.set_phase("loading the model")
    model, _ = load_model_once(Path(model_dir))
    run_maximization(model, Path(folder), layer, units, steps, report)
    ctx.result_path = folder
    return {"units": [int(u) for u in units]}


def request_key(folder: Path) -> str:
    """The job key of the request stored in ``folder`` (model version and request)."""
    return f"{Path(folder).parent.name}/{Path(folder).name}"


def start_maximization(model_dir: Path, folder: Path, layer: str | None, units: list[int], steps: int) -> jobs.Job:
    """Queue the images of ``folder``'s request on the job worker, unless finished or under way; return the job."""
    what = f"filters {', '.join(map(str, units))} of {layer}" if layer else "class-model images"
    params = {"model_dir": str(model_dir), "folder": str(folder), "layer": layer, "units": [int(u) for u in units]}
    done = (Path(folder) / DONE_FILE).exists()
    return jobs.submit(
        "activation_max",
        {**params, "steps": int(steps)},
        key=request_key(folder),
        label=f"Visualising {what}",
        force=not done,
    )
