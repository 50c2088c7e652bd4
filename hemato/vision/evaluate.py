"""Model evaluation: batched prediction, metrics, calibration, an on-disk result cache and the ``evaluate`` job.

A result is a plain JSON-able dict (what the CLI prints and the Evaluate page draws): headline metrics,
per-class precision/recall/F1, the confusion matrix, calibration (15-bin ECE and reliability bins), the
images skipped because the model does not know their label, and one row per image for the galleries.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hemato import jobs
from hemato.config import get_settings
from hemato.data.datasets import Dataset, discover_dataset
from hemato.data.imaging import ImageError, load_array
from hemato.files import atomic_write
from hemato.vision.features import extract_features
from hemato.vision.metrics import compute_metrics
from hemato.vision.models import MODEL_FILE, compiled_forward, load_model, model_key, read_card

if TYPE_CHECKING:
    import keras

ProgressFn = Callable[[int, int], None]
BATCH_SIZE = 64
AUTO_SPLIT = "auto"
CACHE_VERSION = 1


# --------------------------------------------------------------------------------------------- prediction


def _load_batch(paths: Sequence[str], size: int, workers: int = 4) -> tuple[np.ndarray, list[str | None]]:
    """Decode a batch; an unreadable image becomes a black square plus its reason (never an exception)."""

    def one(path: str) -> tuple[np.ndarray, str | None]:
        try:
            return load_array(path, size), None
        except ImageError as exc:
            return np.zeros((size, size, 3), np.uint8), exc.reason

    with ThreadPoolExecutor(max_workers=workers) as pool:
        loaded = list(pool.map(one, paths))
    arrays = [a for a, _ in loaded]
    return (np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)), [r for _, r in loaded]


def predict_paths(
    model: keras.Model,
    paths: Sequence[str],
    input_size: int,
    progress: ProgressFn | None = None,
    batch_size: int = BATCH_SIZE,
) -> tuple[np.ndarray, dict[str, str]]:
    """Class probabilities for image files, decoding the next batch while the model runs on the current one.

    Args:
        model: A HematoVision model (raw [0, 255] RGB in, softmax out); never modified.
        paths: Image files.
        input_size: The model's square input side.
        progress: Called with (images done, total) after each batch.
        batch_size: Images per batch.

    Returns:
        ``(probs, unreadable)``: float32 (N, C) probabilities (NaN rows for unreadable files) and
        ``{path: reason}`` for the files that could not be decoded.
    """
    forward = compiled_forward(model, input_size)
    n_classes = int(model.output.shape[-1])
    unreadable: dict[str, str] = {}

    def load(chunk: Sequence[str]) -> np.ndarray:
        batch, reasons = _load_batch(list(chunk), input_size)
        unreadable.update({path: reason for path, reason in zip(chunk, reasons, strict=True) if reason is not None})
        return batch

    if not paths:
        return np.zeros((0, n_classes), np.float32), unreadable
    probs = extract_features(forward, paths, input_size, progress, batch_size, loader=load)
    probs[[i for i, path in enumerate(paths) if path in unreadable]] = np.nan
    return probs, unreadable


# --------------------------------------------------------------------------------------------- datasets


def resolve_split(dataset: Dataset, split: str | None) -> str | None:
    """``auto`` → the test split when the data has one, else every image; ``all``/None → every image."""
    if split == AUTO_SPLIT:
        return "test" if "test" in dataset.splits else None
    return None if split in (None, "", "all") else split


def split_known(dataset: Dataset, classes: Sequence[str]) -> tuple[Dataset, dict[str, int]]:
    """Keep the rows whose label the model knows; count the others per label (they are skipped, not errors)."""
    known = dataset.frame["label"].isin(list(classes))
    skipped = dataset.frame.loc[~known, "label"].value_counts().sort_index()
    part = dataset.frame[known].reset_index(drop=True)
    return Dataset(dataset.root, part, dataset.source, dataset.manifest), {k: int(v) for k, v in skipped.items()}


# --------------------------------------------------------------------------------------------- cache


def evaluation_key(model_dir: Path, dataset: Dataset, split: str | None) -> str:
    """Cache key of one evaluation: (model file, dataset fingerprint, split)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise ValueError(f"{path.resolve()} is missing; pick another model or retrain this one.")
    raw = f"v{CACHE_VERSION}|{model_key(model_dir)}|{dataset.fingerprint()}|{split or 'all'}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def result_path(cache_dir: Path, key: str) -> Path:
    """Where the evaluation result for ``key`` is stored."""
    return Path(cache_dir) / "evaluations" / f"{key}.json"


def load_result(cache_dir: Path, key: str) -> dict[str, Any] | None:
    """The cached result for ``key``, or None when absent or unreadable."""
    try:
        return json.loads(result_path(cache_dir, key).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _save_result(cache_dir: Path, key: str, result: dict[str, Any]) -> None:
    atomic_write(result_path(cache_dir, key), json.dumps(result))


# --------------------------------------------------------------------------------------------- evaluation


@dataclass
class EvaluationRequest:
    """What to evaluate: a model folder on a dataset (folder or manifest) and split."""

    model_dir: Path
    data_path: Path
    split_csv: Path | None = None
    split: str | None = AUTO_SPLIT

    def resolve(self) -> tuple[Dataset, str | None, str]:
        """The dataset, the concrete split and the cache key (cheap: no image is decoded)."""
        dataset = discover_dataset(self.data_path, self.split_csv)
        split = resolve_split(dataset, self.split)
        subset = dataset.subset(split)
        return subset, split, evaluation_key(self.model_dir, subset, split)


def _rows(frame: Any, probs: np.ndarray, classes: list[str], unreadable: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for path, label, p in zip(frame["path"], frame["label"], probs, strict=True):
        if path in unreadable:
            continue
        k = int(np.argmax(p))
        rows.append(
            {
                "path": path,
                "label": label,
                "predicted": classes[k],
                "confidence": round(float(p[k]), 6),
                "correct": classes[k] == label,
                "probs": [round(float(v), 6) for v in p],
            }
        )
    return rows


def evaluate_model(
    model_dir: str | Path,
    data_path: str | Path,
    split_csv: str | Path | None = None,
    split: str | None = AUTO_SPLIT,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
    model: keras.Model | None = None,
    batch_size: int = BATCH_SIZE,
    refresh: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved model on a dataset split, reading and writing the on-disk result cache.

    Args:
        model_dir: Folder with ``model.keras`` and its card.
        data_path: Dataset folder or CSV manifest.
        split_csv: Optional manifest with paths relative to ``data_path``.
        split: ``auto`` (test split if any, else all), ``all``/None, or a split name.
        cache_dir: Cache folder (default: the settings' cache folder).
        progress: Called with (images done, total).
        model: The already loaded model (it must be the file in ``model_dir``); loaded when omitted.
        batch_size: Images per batch.
        refresh: Recompute even when a cached result exists (the new result replaces it).

    Returns:
        :func:`compute_metrics`'s dict plus ``skipped`` (label → count of images the model does not know),
        ``unreadable``, ``rows`` (path, label, predicted, confidence, correct, probs), ``classes``, ``model``,
        ``data``, ``seconds`` and ``cached``.

    Raises:
        DatasetError: The data cannot be found or the split does not exist.
        ModelLoadError: The model cannot be loaded.
        ValueError: No image of the data has a label the model knows.
    """
    request = EvaluationRequest(Path(model_dir), Path(data_path), Path(split_csv) if split_csv else None, split)
    dataset, split_used, _ = request.resolve()
    return evaluate_dataset(model_dir, dataset, split_used, data_path, cache_dir, progress, model, batch_size, refresh)


def evaluate_dataset(
    model_dir: str | Path,
    dataset: Dataset,
    split_used: str | None,
    data_path: str | Path,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
    model: keras.Model | None = None,
    batch_size: int = BATCH_SIZE,
    refresh: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved model on the rows of ``dataset`` (a split or any subset), with the on-disk result cache.

    Args:
        model_dir: Folder with ``model.keras`` and its card.
        dataset: The rows to score (cached under their fingerprint and ``split_used``).
        split_used: What the rows are, for the cache key and the report (``test``, ``None`` for all, ...).
        data_path: The dataset folder or manifest they come from (for the report).
        cache_dir: Cache folder (default: the settings' cache folder).
        progress: Called with (images done, total).
        model: The already loaded model (it must be the file in ``model_dir``); loaded when omitted.
        batch_size: Images per batch.
        refresh: Recompute even when a cached result exists.

    Returns:
        As :func:`evaluate_model`.

    Raises:
        ModelLoadError: The model cannot be loaded.
        ValueError: No image of the data has a label the model knows.
    """
    model_dir = Path(model_dir)
    cache_dir = Path(cache_dir) if cache_dir else get_settings().cache_dir
    key = evaluation_key(model_dir, dataset, split_used)
    cached = None if refresh else load_result(cache_dir, key)
    if cached is not None:
        if progress:
            progress(cached["n"], cached["n"])
        return {**cached, "cached": True}
    card = read_card(model_dir)
    known, skipped = split_known(dataset, card.classes)
    if len(known) == 0:
        raise ValueError(
            f"None of the {len(dataset)} images in {dataset.root} has a label this model knows "
            f"({', '.join(card.classes)}); their labels are {', '.join(sorted(skipped))}."
        )
    start = time.perf_counter()
    if model is None:
        model, card = load_model(model_dir)
    paths = known.frame["path"].tolist()
    probs, unreadable = predict_paths(model, paths, card.input_size, progress, batch_size)
    ok = ~np.isnan(probs).any(axis=1)
    frame = known.frame
    y = np.array([card.classes.index(label) for label in frame["label"]], dtype=int)
    result = compute_metrics(y[ok], probs[ok], card.classes)
    result.update(
        {
            "classes": list(card.classes),
            "skipped": skipped,
            "n_skipped": int(sum(skipped.values())),
            "unreadable": [{"path": p, "reason": r} for p, r in unreadable.items()],
            "rows": _rows(frame, probs, list(card.classes), unreadable),
            "model": {
                "dir": str(model_dir.resolve()),
                "name": model_dir.name,
                "backbone": card.backbone,
                "input_size": card.input_size,
            },
            "data": {
                "path": str(Path(data_path).resolve()),
                "name": dataset.name,
                "split": split_used,
                "fingerprint": dataset.fingerprint(),
                "n_images": len(dataset),
            },
            "key": key,
            "seconds": round(time.perf_counter() - start, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    _save_result(cache_dir, key, result)
    return {**result, "cached": False}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result without per-image rows (what ``--json`` prints by default)."""
    return {k: v for k, v in result.items() if k != "rows"}


# --------------------------------------------------------------------------------------------- the job
#
# An evaluation runs on the job worker (hemato.jobs, a heavy job), never in a thread of the Streamlit server:
# after every script run Streamlit calls gc.collect(2) and keras.backend.clear_session(), which hold the GIL for
# ~0.8 s once Keras is loaded and starved a thread-based evaluation 30-fold.


@jobs.job("evaluate", heavy=True, label="Evaluating")
def evaluate_job(
    ctx: jobs.JobContext,
    model_dir: str,
    data_path: str,
    split_csv: str | None = None,
    split: str | None = AUTO_SPLIT,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """The ``evaluate`` job: :func:`evaluate_model` with progress and cancellation; the result file is its output."""

    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, "images", "predicting")
        ctx.check_cancel()

    ctx.set_phase("loading the model and images")
    result = evaluate_model(model_dir, data_path, split_csv, split, Path(cache_dir) if cache_dir else None, progress)
    ctx.result_path = str(result_path(Path(cache_dir) if cache_dir else get_settings().cache_dir, result["key"]))
    return {"key": result["key"], "n": result["n"], "accuracy": result["accuracy"], "cached": result["cached"]}


def start_evaluation(request: EvaluationRequest, cache_dir: Path | None = None) -> jobs.Job:
    """Queue (or join) the evaluation of ``request`` on the job worker.

    Returns:
        The same job for every caller asking for the same (model file, data, split) while it is queued or running;
        a new one when a finished job's result has gone from the cache.
    """
    _, split, key = request.resolve()
    cache_dir = Path(cache_dir) if cache_dir else get_settings().cache_dir
    params = {
        "model_dir": str(Path(request.model_dir).resolve()),
        "data_path": str(Path(request.data_path).resolve()),
        "split_csv": str(request.split_csv) if request.split_csv else None,
        "split": request.split,
        "cache_dir": str(cache_dir),
    }
    label = f"Evaluating {Path(request.model_dir).name} on {Path(request.data_path).name} ({split or 'all images'})"
    return jobs.submit("evaluate", params, key=key, label=label, force=load_result(cache_dir, key) is None)


def evaluation_job(key: str) -> jobs.Job | None:
    """The evaluation job of cache key ``key`` (live, else the latest failed one), if any."""
    return jobs.find("evaluate", key)
