"""Training runs as background jobs: a registry (table ``runs`` of :mod:`hemato.db`) plus one folder per run.

A run is started as a separate process (``python -m hemato.training.worker RUN_DIR``), so pages never block and a
reload or a second tab sees the same run. Workers take a file lock, so one job trains at a time and
later ones wait as ``queued``. A worker that dies is detected from its pid and marked ``failed``; its
best checkpoint stays in the run folder.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hemato import db
from hemato.config import PROJECT_ROOT, Settings, get_settings
from hemato.training.train import (
    BATCHES_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    STATUS_FILE,
    STOP_FILE,
    TrainConfig,
    augmenter_for,
    prepare_data,
)

ACTIVE_STATES = ("queued", "running")


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
    """Validate the data, make the run folder and register the run as ``queued``.

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
        (folder / STATUS_FILE).write_text(json.dumps({"state": "queued", "phase": "waiting to start"}))
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


def start_job(run: Run) -> int:
    """Spawn the worker process for ``run``; return its pid."""
    log = (run.path / "log.txt").open("ab")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hemato.training.worker", str(run.path)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    update_run(run.id, pid=proc.pid)
    return proc.pid


def submit_run(config: TrainConfig, settings: Settings | None = None) -> Run:
    """Create and start a run in the background; it queues behind a running one."""
    run = create_run(config, settings)
    start_job(run)
    return get_run(run.id, settings)


def update_run(run_id: str, settings: Settings | None = None, **fields: Any) -> None:
    """Set columns of one run."""
    if not fields:
        return
    with db.begin(_url(settings)) as conn:
        conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(**fields))


def get_run(run_id: str, settings: Settings | None = None) -> Run:
    """One run by id.

    Raises:
        RunError: No such run.
    """
    with db.connect(_url(settings)) as conn:
        row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).mappings().first()
    if row is None:
        raise RunError(f"No run {run_id!r}.")
    return _row_to_run(row)


def pid_alive(pid: int | None) -> bool:
    """True when a process with ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        with contextlib.suppress(OSError, IndexError):
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's live status record (empty dict if unreadable)."""
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def refresh_run(run: Run, settings: Settings | None = None) -> Run:
    """Reconcile the registry with the run folder: pick up progress, and mark dead workers as failed."""
    if run.status not in ACTIVE_STATES:
        return run
    status = read_status(run.path)
    state = status.get("state", run.status)
    if state in ACTIVE_STATES and run.pid and not pid_alive(run.pid):
        message = "The training process ended unexpectedly (killed or crashed); see log.txt in the run folder."
        if (run.path / "checkpoint.keras").exists():
            message += " The best checkpoint so far was kept."
        update_run(run.id, settings, status="failed", message=message)
    elif state != run.status:
        update_run(run.id, settings, status=state)
    return get_run(run.id, settings)


def list_runs(settings: Settings | None = None, limit: int = 200) -> list[Run]:
    """Runs, newest first, with active ones reconciled against their processes."""
    with db.connect(_url(settings)) as conn:
        rows = conn.execute(select(db.runs).order_by(db.runs.c.created.desc()).limit(limit)).mappings().all()
    return [refresh_run(_row_to_run(row), settings) for row in rows]


def request_stop(run_id: str, settings: Settings | None = None) -> None:
    """Ask a run to stop at the next batch; it keeps its best checkpoint."""
    run = get_run(run_id, settings)
    (run.path / STOP_FILE).touch()


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


def active_run(settings: Settings | None = None) -> Run | None:
    """The oldest run still queued or running, if any."""
    active = [r for r in list_runs(settings) if r.status in ACTIVE_STATES]
    return active[-1] if active else None
