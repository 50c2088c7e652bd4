"""The background training process: ``python -m hemato.training.worker RUN_DIR``.

Waits for a free training slot (file locks, one slot by default; ``HEMATO_MAX_JOBS`` for more), then
trains and records the outcome in the run registry. Any failure is written to the run's status and the
registry with a message for the user; the run folder keeps the best checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from hemato.config import get_settings
from hemato.training.runs import read_status, update_run
from hemato.training.train import CONFIG_FILE, STATUS_FILE, RunWriter, TrainConfig, run_training, stop_requested


def _max_jobs() -> int:
    try:
        return max(1, int(os.environ.get("HEMATO_MAX_JOBS", "1")))
    except ValueError:
        return 1


def acquire_slot(home: Path, run_dir: Path, poll_s: float = 1.0) -> IO[str] | None:
    """Block until a training slot is free; return its open lock file, or None if the run was stopped."""
    writer = RunWriter(run_dir)
    while True:
        for slot in range(_max_jobs()):
            handle = (home / f"train-slot-{slot}.lock").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
        if stop_requested(run_dir):
            return None
        writer.update(state="queued", phase="waiting for the running job to finish")
        time.sleep(poll_s)


def failure_message(exc: BaseException) -> str:
    """A message that tells the user what went wrong and what to do."""
    if isinstance(exc, OSError) and exc.errno in (28, 122):
        return "The disk is full; free space (or point HEMATO_HOME elsewhere) and start the run again."
    if isinstance(exc, PermissionError):
        return f"Cannot write {exc.filename}; make HEMATO_HOME writable and start the run again."
    return f"{type(exc).__name__}: {exc}"


def execute_run(run_dir: Path, echo: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run one registered job to completion (waiting for a slot); return an exit code.

    Args:
        run_dir: The run folder made by :func:`hemato.training.runs.create_run`.
        echo: Optional callback receiving each status update (the CLI's progress bar).
    """
    settings = get_settings()
    settings.ensure_home()
    path = Path(run_dir)
    run_id = path.name
    config = TrainConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
    slot = acquire_slot(settings.home, path)
    if slot is None:
        RunWriter(path).update(state="stopped", phase="stopped while queued")
        update_run(run_id, status="stopped", message="Stopped before it started.")
        return 0
    update_run(run_id, status="running", pid=os.getpid())
    try:
        run_training(config, path, echo)
    except Exception as exc:  # noqa: BLE001 - the worker turns any failure into a recorded status
        traceback.print_exc()
        message = failure_message(exc)
        with contextlib.suppress(OSError):
            RunWriter(path).update(state="failed", phase="failed", message=message, finished=time.time())
        update_run(run_id, status="failed", message=message)
        return 1
    finally:
        slot.close()
    status = read_status(path)
    metrics = status.get("metrics", {})
    update_run(
        run_id,
        status=status.get("state", "done"),
        best_val_accuracy=metrics.get("best_val_accuracy") or metrics.get("val_accuracy"),
        test_accuracy=metrics.get("test_accuracy"),
        duration_s=status.get("duration_s"),
        message="" if (path / STATUS_FILE).exists() else "status missing",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(execute_run(Path(sys.argv[1])))
