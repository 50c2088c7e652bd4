"""Model evaluation: batched prediction, metrics, calibration, an on-disk result cache and background jobs.

A result is a plain JSON-able dict (what the CLI prints and the Evaluate page draws): headline metrics,
per-class precision/recall/F1, the confusion matrix, calibration (15-bin ECE and reliability bins), the
images skipped because the model does not know their label, and one row per image for the galleries.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hemato.config import PROJECT_ROOT, get_settings
from hemato.data.datasets import Dataset, discover_dataset
from hemato.data.imaging import ImageError, load_array
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


# --------------------------------------------------------------------------------------------- metrics


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
    target = result_path(cache_dir, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(target)


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
    model_dir = Path(model_dir)
    cache_dir = Path(cache_dir) if cache_dir else get_settings().cache_dir
    request = EvaluationRequest(model_dir, Path(data_path), Path(split_csv) if split_csv else None, split)
    dataset, split_used, key = request.resolve()
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


# --------------------------------------------------------------------------------------------- background jobs
#
# An evaluation runs in its own process (``python -m hemato evaluate ... --progress-file``), not in a thread of
# the Streamlit server: after every script run (so every second while a page polls) Streamlit calls
# ``gc.collect(2)`` and ``keras.backend.clear_session()``, which hold the GIL for ~0.8 s once Keras is loaded and
# starved a thread-based job 30-fold. The process writes its progress to a JSON file that any tab can read.


def progress_path(cache_dir: Path, key: str) -> Path:
    """The progress file of the evaluation job for ``key``."""
    return Path(cache_dir) / "evaluations" / f"{key}.progress.json"


def write_progress(path: Path, **fields: Any) -> None:
    """Atomically merge ``fields`` into the progress file."""
    state = read_progress(path) or {}
    state.update(fields, updated=time.time())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def read_progress(path: Path) -> dict[str, Any] | None:
    """The progress file's content, or None when absent or half-written."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


@contextmanager
def _one_at_a_time(cache_dir: Path) -> Iterator[None]:
    # Two evaluations would only share the same two cores and both finish later: queue them on a file lock.
    lock_path = Path(cache_dir) / "evaluations" / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_job(request: EvaluationRequest, cache_dir: Path, progress_file: Path) -> dict[str, Any]:
    """Body of a background evaluation: waits its turn, evaluates, and records progress and outcome in a file.

    Raises:
        Whatever :func:`evaluate_model` raises, after recording it in the progress file as ``failed``.
    """
    write_progress(progress_file, status="queued", pid=os.getpid(), done=0, total=0, error="", started=None)
    with _one_at_a_time(cache_dir):
        write_progress(progress_file, status="running", phase="loading the model and images")
        started: list[float] = []

        def progress(done: int, total: int) -> None:
            if not started:
                started.append(time.time())
            write_progress(progress_file, done=done, total=total, started=started[0], phase="predicting")

        try:
            result = evaluate_model(
                request.model_dir, request.data_path, request.split_csv, request.split, cache_dir, progress
            )
        except Exception as exc:
            write_progress(progress_file, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        write_progress(progress_file, status="done", done=result["n"], total=result["n"])
        return result


@dataclass(frozen=True)
class JobState:
    """A snapshot of a background evaluation."""

    status: str  # queued → running → done | failed
    done: int = 0
    total: int = 0
    started: float | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        """True once the job is done or failed."""
        return self.status in ("done", "failed")

    @property
    def fraction(self) -> float:
        """Share of images predicted, in [0, 1]."""
        return min(1.0, self.done / self.total) if self.total else 0.0

    def eta(self) -> float | None:
        """Seconds left, extrapolated from the images done so far (None before the first batch)."""
        if self.started is None or self.done == 0 or self.total == 0:
            return None
        return (time.time() - self.started) / self.done * (self.total - self.done)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EvaluationJob:
    """An evaluation running in a background process; :meth:`poll` reads its progress file."""

    key: str
    request: EvaluationRequest
    cache_dir: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def progress_file(self) -> Path:
        """Where the process records its progress."""
        return progress_path(self.cache_dir, self.key)

    def poll(self) -> JobState:
        """The current state; a process that died without saying so is reported as failed."""
        exit_code = self.process.poll() if self.process is not None else None  # also reaps a finished child
        if load_result(self.cache_dir, self.key) is not None:
            return JobState("done", 1, 1)
        state = read_progress(self.progress_file) or {"status": "queued"}
        status = state.get("status", "queued")
        if status in ("queued", "running"):
            gone = exit_code is not None if self.process is not None else not _pid_alive(state.get("pid"))
            if gone and (self.process is not None or state.get("pid")):
                code = f" (exit code {exit_code})" if exit_code is not None else ""
                return JobState("failed", error=f"The evaluation process stopped unexpectedly{code}.")
        return JobState(
            status, int(state.get("done", 0)), int(state.get("total", 0)), state.get("started"), state.get("error", "")
        )

    def result(self) -> dict[str, Any] | None:
        """The stored result once done."""
        return load_result(self.cache_dir, self.key)

    def wait(self, timeout: float = 600.0, interval: float = 0.5) -> JobState:
        """Block until the job finishes or ``timeout`` seconds pass (for tests and scripts); return its state."""
        deadline = time.monotonic() + timeout
        state = self.poll()
        while not state.finished and time.monotonic() < deadline:
            time.sleep(interval)
            state = self.poll()
        return state


_JOBS: dict[str, EvaluationJob] = {}
_JOBS_LOCK = threading.Lock()


def _spawn(request: EvaluationRequest, cache_dir: Path, progress_file: Path) -> subprocess.Popen:

    cmd = [sys.executable, "-m", "hemato", "evaluate", "--model", str(request.model_dir)]
    cmd += ["--data", str(request.data_path), "--split", request.split or "all"]
    cmd += ["--cache-dir", str(cache_dir), "--progress-file", str(progress_file)]
    if request.split_csv is not None:
        cmd += ["--split-csv", str(request.split_csv)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    log = progress_file.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True
        )


def start_evaluation(request: EvaluationRequest, cache_dir: Path) -> EvaluationJob:
    """Start (or join) the background evaluation of ``request``.

    Args:
        request: Model, data and split.
        cache_dir: Result cache folder (the settings' ``cache_dir``).

    Returns:
        The job: the same one for every caller asking for the same (model file, data, split) while it runs;
        already done when a cached result exists.
    """
    _, _, key = request.resolve()
    cache_dir = Path(cache_dir)
    with _JOBS_LOCK:
        job = _JOBS.get(key)
        if job is not None and job.poll().status != "failed":
            return job
        job = EvaluationJob(key, request, cache_dir)
        progress_file = job.progress_file
        previous = read_progress(progress_file)
        attach = previous and previous.get("status") in ("queued", "running") and _pid_alive(previous.get("pid"))
        if load_result(cache_dir, key) is None and not attach:
            write_progress(progress_file, status="queued", done=0, total=0, error="", pid=None, started=None)
            job.process = _spawn(request, cache_dir, progress_file)
            write_progress(progress_file, pid=job.process.pid)
        _JOBS[key] = job
        return job


def get_job(key: str) -> EvaluationJob | None:
    """The job started for ``key`` in this process, if any."""
    with _JOBS_LOCK:
        return _JOBS.get(key)


# --------------------------------------------------------------------------------------------- data choices
