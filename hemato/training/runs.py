"""Training runs: a registry (table ``runs`` of :mod:`hemato.db`), one folder per run, and the ``train`` job.

A run's metadata, curves and checkpoints live in its folder (``config.json``, ``history.csv``, ``batches.csv``,
``checkpoint.keras``, then ``model.keras`` + ``model_card.json``); its progress is the status record of the job
that trains it (:mod:`hemato.jobs`, kind ``train``, a heavy job), linked by ``runs.job_id``. So pages never
block, a reload or a second tab sees the same run, runs queue behind other heavy jobs, stopping is cancelling
the job, and a worker that dies leaves a failed run that keeps its best checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
import uuid
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hemato import db, jobs
from hemato.config import Settings, get_settings
from hemato.jobs import JobContext, failure_message, job
from hemato.training.train import (
    BATCHES_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    TrainConfig,
    augmenter_for,
    prepare_data,
    run_training,
)
from hemato.vision.models import ModelLoadError, read_card

ACTIVE_STATES = ("queued", "running")
# What a run is called when its job ends in each state.
RUN_STATE = {"queued": "queued", "running": "running", "done": "done", "cancelled": "stopped", "failed": "failed"}
CHECKPOINT_KEPT = " The best checkpoint so far was kept in the run folder."


class RunError(RuntimeError):
    """A run cannot be created or controlled; the message says what to do."""


@dataclass
class Run:
    """One row of the run registry."""

    id: str
    created: float
    status: str
    backbone: str
    data: str
    folder: str
    config: str
    pid: int | None
    best_val_accuracy: float | None
    test_accuracy: float | None
    duration_s: float | None
    message: str
    job_id: str | None = None

    @property
    def path(self) -> Path:
        """The run folder."""
        return Path(self.folder)


def _url(settings: Settings | None) -> str | None:
    return settings.db_url if settings is not None else None


def _row_to_run(row: Any) -> Run:
    return Run(**{f.name: row[f.name] for f in dataclass_fields(Run)})


def create_run(config: TrainConfig, settings: Settings | None = None) -> Run:
    """Validate the data, make the run folder and register the run as ``queued`` (no job yet).

    Raises:
        DatasetError: The data cannot train a classifier (too few classes or images).
        ValueError: Unknown augmentation preset.
        RunError: The run folder cannot be written (disk full, permissions).
    """
    settings = settings or get_settings()
    prepare_data(config)
    augmenter_for(config.augment)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    folder = settings.runs_dir / run_id
    try:
        folder.mkdir(parents=True)
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2))
    except OSError as exc:
        raise RunError(
            f"Cannot write the run folder {folder} ({exc.strerror or exc}); free disk space or set HEMATO_HOME "
            "to a writable folder."
        ) from exc
    with db.begin(_url(settings)) as conn:
        conn.execute(
            db.runs.insert().values(
                id=run_id,
                created=time.time(),
                status="queued",
                backbone=config.backbone,
                data=config.data,
                folder=str(folder),
                config=json.dumps(asdict(config)),
            )
        )
    return get_run(run_id, settings)


def submit_run(config: TrainConfig, settings: Settings | None = None) -> Run:
    """Create a run and queue its ``train`` job (it waits behind other heavy jobs); return the run.

    Raises:
        DatasetError, ValueError, RunError: As :func:`create_run`.
        hemato.jobs.JobError: The job queue cannot be reached.
    """
    run = create_run(config, settings)
    label = f"Training {config.backbone} (run {run.id})"
    queued = jobs.submit("train", {"run_id": run.id}, key=run.id, label=label)
    update_run(run.id, settings, job_id=queued.id)
    return refresh_run(get_run(run.id, settings), settings)


def update_run(run_id: str, settings: Settings | None = None, **values: Any) -> None:
    """Set columns of one run."""
    if not values:
        return
    with db.begin(_url(settings)) as conn:
        conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(**values))


def get_run(run_id: str, settings: Settings | None = None) -> Run:
    """One run by id (as stored; :func:`refresh_run` reconciles it with its job).

    Raises:
        RunError: No such run.
    """
    with db.connect(_url(settings)) as conn:
        row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).mappings().first()
    if row is None:
        raise RunError(f"No run {run_id!r}.")
    return _row_to_run(row)


def refresh_run(run: Run, settings: Settings | None = None) -> Run:
    """Reconcile an active run with its job: pick up its state, and the reason when the job failed."""
    if run.status not in ACTIVE_STATES or not run.job_id:
        return run
    try:
        current = jobs.get(run.job_id)
    except jobs.JobError:
        return run
    status = RUN_STATE[current.state]
    if status == run.status:
        return run
    values: dict[str, Any] = {"status": status}
    if status == "failed":
        values["message"] = current.error + (CHECKPOINT_KEPT if (run.path / CHECKPOINT_FILE).exists() else "")
    elif status == "stopped" and current.started is None:
        values["message"] = "Stopped before it started."
    update_run(run.id, settings, **values)
    return get_run(run.id, settings)


def list_runs(settings: Settings | None = None, limit: int = 200) -> list[Run]:
    """Runs, newest first, with active ones reconciled against their jobs."""
    with db.connect(_url(settings)) as conn:
        rows = conn.execute(select(db.runs).order_by(db.runs.c.created.desc()).limit(limit)).mappings().all()
    return [refresh_run(_row_to_run(row), settings) for row in rows]


def run_job(run: Run) -> jobs.Job | None:
    """The job that trains ``run`` (None for runs made before jobs existed)."""
    if not run.job_id:
        return None
    try:
        return jobs.get(run.job_id)
    except jobs.JobError:
        return None


def request_stop(run_id: str, settings: Settings | None = None) -> None:
    """Ask a run to stop at the next batch (cancels its job); it keeps its best model."""
    run = get_run(run_id, settings)
    if run.job_id:
        jobs.cancel(run.job_id)
    refresh_run(run, settings)


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a run's CSV log with numbers parsed (empty when absent)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key, value in row.items():
            with contextlib.suppress(TypeError, ValueError):
                row[key] = float(value) if key != "phase" else value
    return rows


def run_history(run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch history rows."""
    return read_csv_rows(Path(run_dir) / HISTORY_FILE)


def run_batches(run_dir: Path) -> list[dict[str, Any]]:
    """Within-epoch training-loss points."""
    return read_csv_rows(Path(run_dir) / BATCHES_FILE)


def run_metrics(run: Run) -> dict[str, Any]:
    """The finished run's metrics from its model card (empty when it has no model yet)."""
    try:
        return read_card(run.path).metrics
    except ModelLoadError:
        return {}


@job("train", heavy=True, label="Training")
def train_job(ctx: JobContext, run_id: str) -> dict[str, Any]:
    """The ``train`` job: train a registered run in its folder and record the outcome in the registry."""
    started = time.time()
    run = get_run(run_id)
    config = TrainConfig.from_dict(json.loads((run.path / CONFIG_FILE).read_text()))
    update_run(run_id, status="running")
    ctx.result_path = str(run.path)
    try:
        run_training(config, run.path, ctx)
    except Exception as exc:
        kept = CHECKPOINT_KEPT if (run.path / CHECKPOINT_FILE).exists() else ""
        update_run(run_id, status="failed", message=failure_message(exc) + kept)
        raise
    metrics = run_metrics(run)
    status = "stopped" if ctx.cancelled() else "done"
    duration = round(time.time() - started, 1)
    update_run(
        run_id,
        status=status,
        best_val_accuracy=metrics.get("best_val_accuracy") or metrics.get("val_accuracy"),
        test_accuracy=metrics.get("test_accuracy"),
        duration_s=duration,
        message="" if metrics else "Stopped before a model existed.",
    )
    return {"status": status, "test_accuracy": metrics.get("test_accuracy"), "duration_s": duration}
