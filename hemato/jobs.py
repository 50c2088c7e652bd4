"""The one job layer: long work runs in a worker process, with one status record per job that every page polls.

Submitting and watching a job::

    job = jobs.submit("evaluate", {"model_dir": "...", "data_path": "..."}, key=evaluation_key)
    jobs.get(job.id)                  # state, phase, done/total unit, rate, ETA, heartbeat, error, result
    jobs.find("evaluate", key)        # the live (queued, running or done) job of that key, if any
    jobs.cancel(job.id)               # queued: never starts; running: stops at its next ctx.check_cancel()

``submit`` returns the existing queued, running or done job with the same kind and key instead of starting a
second one (``force=True`` replaces a done one); failed and cancelled jobs never block a new submission.

**A new kind is one decorated function**, in any module of ``hemato.data``, ``vision``, ``training``,
``teaching`` or ``smear`` (the worker imports them all)::

    @job("smear_count", heavy=True, label="Counting cells")
    def count_cells(ctx: JobContext, smear: str) -> dict[str, Any]:
        for i, tile in enumerate(tiles):
            ctx.check_cancel()                                   # raises JobCancelled once cancel is asked
            ...
            ctx.progress(i + 1, len(tiles), unit="tiles", phase="detecting")   # rate, ETA, throttled writes
        return {"cells": n}                                      # small JSON, kept as the job's result

Parameters and results are JSON; larger outputs are files in ``ctx.workdir`` (the job's own folder under
HEMATO_HOME) or wherever the kind keeps its cache, named by ``ctx.result_path``. A failure becomes the job's
``error`` (the exception's message when it is one of ours, written for the user) and the traceback goes to
``ctx.log_path``.

**Workers.** ``python -m hemato worker`` runs huey consumers (process workers): one queue for *heavy* jobs
(training, evaluation, feature extraction, explorer statistics) with ``HEMATO_HEAVY_SLOTS`` slots (default 1,
so heavy jobs queue instead of halving each other's two cores) and one for *light* jobs (TFLite export,
slow saliency, activation maximisation) with ``HEMATO_LIGHT_SLOTS`` (default 1), so they never wait behind a
ten-minute training. The queue is huey's SQLite storage under HEMATO_HOME (no server) or, with
``HEMATO_REDIS_URL``, Redis, so workers on other machines take jobs too (they need the same database, models
folder and HEMATO_HOME files, e.g. on a shared mount). With ``HEMATO_WORKER=auto`` (the default) the app starts
a local worker when none is alive; ``external`` never starts one. This module is the only place in hemato that
starts processes or threads (a test checks it).

A worker heartbeats each running job every few seconds; a job whose heartbeat is older than
:data:`STALE_AFTER_S`, or whose process is gone on this machine, is marked failed with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import json
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from hemato import db
from hemato.config import PROJECT_ROOT, Settings, get_settings

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
HEAVY, LIGHT = "heavy", "light"
HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0
PROGRESS_EVERY_S = 0.5
CANCEL_POLL_S = 1.0
SPAWN_IDLE_EXIT_S = 900.0
DEAD_WORKER = "The worker stopped (killed or crashed) while running this job; start it again."
NO_HEARTBEAT = "The worker stopped responding (no heartbeat for {seconds:.0f} s); start the job again."
INTERRUPTED = "The worker was shut down while running this job; start it again."

log = logging.getLogger("hemato.jobs")


class JobError(RuntimeError):
    """A job cannot be submitted or controlled; the message says what to do."""


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.check_cancel` once the user asked the job to stop."""


# --------------------------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class JobKind:
    """A registered kind of job: its function and which queue it runs on."""

    name: str
    fn: Callable[..., Any]
    queue: str
    label: str


KINDS: dict[str, JobKind] = {}


def job(name: str, heavy: bool = False, label: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(ctx, **params)`` as the job kind ``name`` (heavy jobs share the heavy slots)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        KINDS[name] = JobKind(name, fn, HEAVY if heavy else LIGHT, label or name.replace("_", " "))
        return fn

    return register


def _kind(name: str) -> JobKind:
    if name not in KINDS:
        raise JobError(f"Unknown job kind {name!r}; known kinds: {', '.join(sorted(KINDS)) or 'none'}.")
    return KINDS[name]


# --------------------------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Job:
    """One job's status record (a snapshot; call :func:`get` again for fresh values)."""

    id: str
    kind: str
    key: str
    label: str
    queue: str
    state: str
    phase: str
    done: float | None
    total: float | None
    unit: str
    rate: float | None
    eta_s: float | None
    params: dict[str, Any]
    result: Any
    result_path: str | None
    error: str
    log_path: str | None
    worker: str | None
    task_id: str | None
    cancel_requested: bool
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.state in ACTIVE

    @property
    def fraction(self) -> float:
        """Share of the work done, in [0, 1] (0 when the total is unknown)."""
        return min(1.0, max(0.0, (self.done or 0) / self.total)) if self.total else 0.0

    def progress_text(self, now: float | None = None) -> str:
        """``done/total unit · rate unit/s · ETA mm:ss``, or the time elapsed while no ETA is known yet."""
        parts = []
        if self.total:
            parts.append(f"{_number(self.done or 0)}/{_number(self.total)} {self.unit}".strip())
        if self.rate:
            rate = f"{self.rate:,.0f}" if self.rate >= 10 else f"{self.rate:.2g}"
            parts.append(f"{rate} {self.unit or 'steps'}/s")
        if self.state == "running" and self.eta_s is not None:
            parts.append(f"ETA {format_eta(self.eta_s)}")
        elif self.state == "running" and self.started is not None:
            parts.append(f"{format_eta((now or time.time()) - self.started)} elapsed")
        return " · ".join(parts)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def format_eta(seconds: float | None) -> str:
    """Seconds as ``mm:ss`` or ``h:mm:ss`` (tqdm's format); ``…`` when unknown."""
    from tqdm import tqdm

    if seconds is None or seconds < 0:
        return "…"
    return tqdm.format_interval(seconds)


def _to_job(row: Any) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        key=row["key"],
        label=row["label"] or "",
        queue=row["queue"],
        state=row["state"],
        phase=row["phase"] or "",
        done=row["done"],
        total=row["total"],
        unit=row["unit"] or "",
        rate=row["rate"],
        eta_s=row["eta_s"],
        params=json.loads(row["params"] or "{}"),
        result=json.loads(row["result"]) if row["result"] else None,
        result_path=row["result_path"],
        error=row["error"] or "",
        log_path=row["log_path"],
        worker=row["worker"],
        task_id=row["task_id"],
        cancel_requested=bool(row["cancel_requested"]),
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        heartbeat=row["heartbeat"],
    )


def _live_key(kind: str, key: str) -> str:
    return f"{kind}|{key}"


def _select(conn: Connection, *where: Any) -> list[Job]:
    rows = conn.execute(select(db.jobs).where(*where).order_by(db.jobs.c.created.desc())).mappings().all()
    return [_to_job(r) for r in rows]


def _update(job_id: str, *where: Any, **values: Any) -> bool:
    """Set columns of one job (only while ``where`` holds); True when the row was changed."""
    with db.begin() as conn:
        result = conn.execute(db.jobs.update().where(db.jobs.c.id == job_id, *where).values(**values))
    return bool(result.rowcount)


# --------------------------------------------------------------------------------------------- submitting


def submit(
    kind: str, params: dict[str, Any] | None = None, key: str | None = None, label: str = "", force: bool = False
) -> Job:
    """Queue a job of ``kind`` (or return the live one with the same key) and make sure a worker will run it.

    Args:
        kind: A name registered with :func:`job`.
        params: Keyword arguments of the job function (JSON-able).
        key: What makes two submissions the same job (default: a fresh id, never shared).
        label: What the UI calls this job (default: the kind's label).
        force: Replace a *done* job with the same key by a new one (active jobs are still shared).

    Raises:
        JobError: Unknown kind, parameters that are not JSON, or the queue cannot be reached.
    """
    spec = _kind(kind)
    params = dict(params or {})
    try:
        encoded = json.dumps(params)
    except (TypeError, ValueError) as exc:
        raise JobError(f"Parameters of a {kind} job must be JSON (numbers, strings, lists, dicts): {exc}") from exc
    key = key or uuid.uuid4().hex
    live = _live_key(kind, key)
    settings = get_settings()
    job_id = uuid.uuid4().hex[:16]
    try:
        with db.begin() as conn:
            [existing] = _select(conn, db.jobs.c.live_key == live) or [None]
            if existing is not None and not (force and existing.state == "done"):
                return existing
            if existing is not None:
                conn.execute(db.jobs.update().where(db.jobs.c.id == existing.id).values(live_key=None))
            conn.execute(
                db.jobs.insert().values(
                    id=job_id,
                    kind=kind,
                    key=key,
                    live_key=live,
                    label=label or spec.label,
                    queue=spec.queue,
                    state="queued",
                    phase="waiting for a worker",
                    params=encoded,
                    created=time.time(),
                    log_path=str(settings.home / "logs" / "jobs" / f"{job_id}.log"),
                )
            )
    except db.IntegrityError:  # another process submitted the same key a moment ago: share its job
        found = find(kind, key)
        if found is None:
            raise
        return found
    try:
        task_id = _enqueue(settings, spec.queue, job_id)
    except Exception as exc:  # noqa: BLE001 - any broker failure becomes a failed job with a clear message
        _update(job_id, state="failed", live_key=None, finished=time.time(), error=_queue_unreachable(settings, exc))
        return get(job_id)
    _update(job_id, task_id=task_id)
    ensure_worker(settings)
    return get(job_id)


def _queue_unreachable(settings: Settings, exc: BaseException) -> str:
    where = f"Redis at {settings.redis_url}" if settings.redis_url else f"the queue under {settings.home}"
    return f"The job queue ({where}) cannot be reached: {exc}. Check HEMATO_REDIS_URL / HEMATO_HOME and try again."


def get(job_id: str) -> Job:
    """One job by id (dead workers are detected first).

    Raises:
        JobError: No such job.
    """
    reap_dead_jobs()
    with db.connect() as conn:
        found = _select(conn, db.jobs.c.id == job_id)
    if not found:
        raise JobError(f"No job {job_id!r}.")
    return found[0]


def find(kind: str, key: str) -> Job | None:
    """The live (queued, running or done) job of ``kind`` with ``key``, else the latest failed or cancelled one."""
    reap_dead_jobs()
    with db.connect() as conn:
        found = _select(conn, db.jobs.c.kind == kind, db.jobs.c.key == key)
    live = [j for j in found if j.state in ("queued", "running", "done")]
    return (live or found or [None])[0]


def list_jobs(kind: str | None = None, limit: int = 200) -> list[Job]:
    """Jobs (of one kind, or all), newest first."""
    reap_dead_jobs()
    where = [db.jobs.c.kind == kind] if kind else []
    with db.connect() as conn:
        rows = (
            conn.execute(select(db.jobs).where(*where).order_by(db.jobs.c.created.desc()).limit(limit)).mappings().all()
        )
    return [_to_job(r) for r in rows]


def cancel(job_id: str) -> Job:
    """Cancel a job: a queued one never starts; a running one stops at its next :meth:`JobContext.check_cancel`.

    Raises:
        JobError: No such job.
    """
    current = get(job_id)
    if current.state == "queued" and _update(
        job_id,
        db.jobs.c.state == "queued",
        state="cancelled",
        live_key=None,
        phase="cancelled before it started",
        finished=time.time(),
    ):
        if current.task_id:
            with contextlib.suppress(Exception):  # best effort: the worker also skips a cancelled record
                _huey(get_settings(), current.queue).revoke_by_id(current.task_id)
    elif current.state == "running":
        _update(job_id, db.jobs.c.state == "running", cancel_requested=1, phase="stopping…")
    return get(job_id)


def wait(
    job_id: str, timeout: float = 600.0, poll_s: float = 0.5, on_update: Callable[[Job], None] | None = None
) -> Job:
    """Block until the job is no longer queued or running (or ``timeout`` passes); for the CLI and tests."""
    deadline = time.monotonic() + timeout
    current = get(job_id)
    while current.active and time.monotonic() < deadline:
        if on_update is not None:
            on_update(current)
        if current.state == "queued":
            ensure_worker()  # the worker may have gone idle and exited
        time.sleep(poll_s)
        current = get(job_id)
    if on_update is not None:
        on_update(current)
    return current


# --------------------------------------------------------------------------------------------- the queue (huey)


_HUEYS: OrderedDict[tuple[str, str], tuple[Any, Any]] = OrderedDict()
_HUEYS_LOCK = threading.Lock()


def queue_id(settings: Settings) -> str:
    """Which queue backend this configuration uses (workers register under it; no password in it)."""
    if settings.redis_url:
        from redis.connection import parse_url

        parts = parse_url(settings.redis_url)
        return f"redis:{parts.get('host', 'localhost')}:{parts.get('port', 6379)}/{parts.get('db', 0)}"
    return f"sqlite:{settings.home / 'jobs.sqlite3'}"


def _huey(settings: Settings, queue: str) -> Any:
    """The huey instance of one queue (``heavy`` or ``light``)."""
    return _queue(settings, queue)[0]


def _queue(settings: Settings, queue: str) -> tuple[Any, Any]:
    """(huey instance, its task wrapper) of one queue; the one huey task runs any job by id."""
    from huey import RedisHuey, SqliteHuey

    key = (queue_id(settings), queue)
    with _HUEYS_LOCK:
        if key not in _HUEYS:
            name = f"hemato-{queue}"
            if settings.redis_url:
                huey = RedisHuey(name, url=settings.redis_url, results=False)
            else:
                settings.ensure_home()
                huey = SqliteHuey(name, filename=str(settings.home / "jobs.sqlite3"), results=False, timeout=30)
            task = huey.task(name="run_job")(run_job)
            huey.on_startup("die_with_consumer")(_die_with_parent)
            _HUEYS[key] = (huey, task)
            while len(_HUEYS) > 8:  # tests switch HEMATO_HOME often: close the oldest queue
                _HUEYS.popitem(last=False)[1][0].storage.close()
        _HUEYS.move_to_end(key)
        return _HUEYS[key]


def _enqueue(settings: Settings, queue: str, job_id: str) -> str:
    huey, task = _queue(settings, queue)
    message = task.s(job_id)
    huey.enqueue(message)
    return str(message.id)


# --------------------------------------------------------------------------------------------- running a job


def worker_name() -> str:
    """``host:pid`` of this process, as recorded on the jobs it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Segment:
    """The stretch of progress rate and ETA are measured over (it restarts when phase, unit or total change)."""

    signature: tuple[Any, ...]
    started: float
    done0: float


@dataclass
class JobContext:
    """What a job function gets: its id and folder, progress reporting and cancellation."""

    job_id: str
    kind: str
    params: dict[str, Any]
    workdir: Path
    log_path: Path
    result_path: str | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _segment: _Segment | None = field(default=None, repr=False)
    _written: float = field(default=0.0, repr=False)
    _phase: str = field(default="", repr=False)
    _unit: str = field(default="", repr=False)

    def progress(
        self, done: float, total: float | None = None, unit: str | None = None, phase: str | None = None
    ) -> None:
        """Record progress: rate and ETA over the current phase; writes at most every 0.5 s (and at the end)."""
        now = time.time()
        self._phase = phase if phase is not None else self._phase
        self._unit = unit if unit is not None else self._unit
        signature = (self._phase, self._unit, total)
        if self._segment is None or self._segment.signature != signature:
            self._segment = _Segment(signature, now, float(done))
            changed = True
        else:
            changed = False
        elapsed = now - self._segment.started
        rate = (done - self._segment.done0) / elapsed if elapsed > 0.2 and done > self._segment.done0 else None
        eta = (total - done) / rate if rate and total is not None else None
        finished = total is not None and done >= total
        if changed or finished or now - self._written >= PROGRESS_EVERY_S:
            self._written = now
            values: dict[str, Any] = {"phase": self._phase, "done": done, "total": total, "unit": self._unit}
            values.update(rate=rate, eta_s=eta, heartbeat=now)
            _update(self.job_id, db.jobs.c.state == "running", **values)

    def set_phase(self, phase: str) -> None:
        """Say what the job is doing now, without a count (e.g. "loading the model")."""
        self._phase = phase
        self._segment = None
        self._written = time.time()
        _update(self.job_id, db.jobs.c.state == "running", phase=phase, done=None, total=None, rate=None, eta_s=None)

    def cancelled(self) -> bool:
        """True once someone asked this job to stop (checked by the heartbeat every second, so this is free)."""
        return self._cancelled.is_set()

    def check_cancel(self) -> None:
        """Raise :class:`JobCancelled` once someone asked this job to stop."""
        if self._cancelled.is_set():
            raise JobCancelled


class _Heartbeat(threading.Thread):
    """Beats for a running job every :data:`HEARTBEAT_S`, and notices cancel requests within a second."""

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(name=f"hemato-heartbeat-{ctx.job_id}", daemon=True)
        self.ctx = ctx
        self.stopped = threading.Event()

    def run(self) -> None:
        last_beat = 0.0
        while not self.stopped.wait(CANCEL_POLL_S):
            with contextlib.suppress(Exception):  # a briefly locked or unreachable database must not kill the job
                now = time.time()
                if now - last_beat >= HEARTBEAT_S:
                    _update(self.ctx.job_id, db.jobs.c.state == "running", heartbeat=now)
                    last_beat = now
                with db.connect() as conn:
                    asked = conn.execute(
                        select(db.jobs.c.cancel_requested).where(db.jobs.c.id == self.ctx.job_id)
                    ).scalar()
                if asked:
                    self.ctx._cancelled.set()


def failure_message(exc: BaseException) -> str:
    """What the user reads when a job fails: our errors' own messages, the disk-full and permission cases."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "The disk is full; free space (or point HEMATO_HOME elsewhere) and start the job again."
    if isinstance(exc, PermissionError):
        return f"Cannot write {exc.filename}; make HEMATO_HOME writable and start the job again."
    if isinstance(exc, ValueError | RuntimeError | OSError) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _claim(job_id: str) -> Job | None:
    """Mark a queued job running in this process; None when it was cancelled (or taken) meanwhile."""
    now = time.time()
    if not _update(
        job_id,
        db.jobs.c.state == "queued",
        state="running",
        worker=worker_name(),
        started=now,
        heartbeat=now,
        phase="starting",
    ):
        return None
    with db.connect() as conn:
        return _select(conn, db.jobs.c.id == job_id)[0]


def _finish(job_id: str, state: str, **values: Any) -> None:
    values = {**values, "state": state, "finished": time.time(), "eta_s": None}
    if state in ("failed", "cancelled"):
        values["live_key"] = None
    if not _update(job_id, db.jobs.c.state == "running", db.jobs.c.worker == worker_name(), **values):
        log.warning("job %s was already marked finished elsewhere; outcome %s dropped", job_id, state)


def run_job(job_id: str) -> None:
    """Run one queued job in this process (the huey task; also usable directly in tests and scripts)."""
    claimed = _claim(job_id)
    if claimed is None:
        return
    settings = get_settings()
    workdir = settings.home / "jobs" / job_id
    log_path = Path(claimed.log_path or settings.home / "logs" / "jobs" / f"{job_id}.log")
    ctx = JobContext(job_id, claimed.kind, claimed.params, workdir, log_path)
    heartbeat = _Heartbeat(ctx)
    heartbeat.start()
    try:
        spec = _kind(claimed.kind)
        workdir.mkdir(parents=True, exist_ok=True)
        result = spec.fn(ctx, **claimed.params)
        encoded = json.dumps(result) if result is not None else None
    except JobCancelled:
        _finish(job_id, "cancelled", phase="cancelled", result_path=ctx.result_path)
    except KeyboardInterrupt:  # the consumer is shutting down (SIGTERM, or its parent died)
        _finish(job_id, "failed", error=INTERRUPTED, phase="interrupted")
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the status record
        _write_log(log_path, claimed, exc)
        _finish(job_id, "failed", error=failure_message(exc), phase="failed")
    else:
        state = "cancelled" if ctx.cancelled() else "done"
        phase = "stopped early; the work so far is kept" if state == "cancelled" else "finished"
        _finish(job_id, state, phase=phase, result=encoded, result_path=ctx.result_path)
    finally:
        heartbeat.stopped.set()
        gc.collect()


def _write_log(path: Path, claimed: Job, exc: BaseException) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} {claimed.kind} job {claimed.id} failed on {worker_name()}\n"
            )
            fh.write(f"params: {json.dumps(claimed.params)}\n")
            fh.write("".join(traceback.format_exception(exc)))


# --------------------------------------------------------------------------------------------- dead workers


def pid_alive(pid: int | None) -> bool:
    """True when a process with ``pid`` exists on this machine and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _worker_gone(worker: str | None) -> bool:
    host, _, pid = (worker or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def reap_dead_jobs() -> int:
    """Mark running jobs whose worker died (pid gone here, or no heartbeat anywhere) failed; return how many."""
    now = time.time()
    with db.connect() as conn:
        running = _select(conn, db.jobs.c.state == "running")
    reaped = 0
    for current in running:
        if _worker_gone(current.worker):
            error = DEAD_WORKER
        elif current.heartbeat is not None and now - current.heartbeat > STALE_AFTER_S:
            error = NO_HEARTBEAT.format(seconds=now - current.heartbeat)
        else:
            continue
        reaped += _update(
            current.id,
            db.jobs.c.state == "running",
            db.jobs.c.worker == current.worker,
            state="failed",
            error=error,
            live_key=None,
            finished=now,
            eta_s=None,
            phase="the worker stopped",
        )
    return reaped


# --------------------------------------------------------------------------------------------- workers


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent process dies (huey then marks the running job interrupted)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


def _consume(queue: str, slots: int) -> None:
    """Body of one consumer process: huey's consumer with ``slots`` process workers on one queue."""
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {queue} %(name)s %(message)s")
    huey = _huey(get_settings(), queue)
    consumer = huey.create_consumer(
        workers=slots, worker_type="process", periodic=False, max_delay=1.0, health_check_interval=5
    )
    consumer.run()


def alive_workers(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Workers of this queue backend that heartbeat recently (their rows of the ``workers`` table)."""
    settings = settings or get_settings()
    since = time.time() - STALE_AFTER_S
    with db.connect() as conn:
        rows = (
            conn.execute(
                select(db.workers).where(db.workers.c.queue == queue_id(settings), db.workers.c.heartbeat > since)
            )
            .mappings()
            .all()
        )
    here = socket.gethostname()
    return [dict(r) for r in rows if r["host"] != here or pid_alive(r["pid"])]


@contextlib.contextmanager
def _machine_lock(settings: Settings) -> Iterator[bool]:
    """Hold this machine's worker lock while inside (yields False when another worker holds it)."""
    settings.ensure_home()
    path = settings.home / f"worker-{socket.gethostname()}.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


class _Supervisor:
    """``python -m hemato worker``: one consumer process per queue, a heartbeat, restarts and a clean stop."""

    def __init__(self, settings: Settings, idle_exit: float | None) -> None:
        self.settings = settings
        self.idle_exit = idle_exit
        self.stop_signal: int | None = None
        self.children: dict[str, multiprocessing.process.BaseProcess] = {}
        self.id = worker_name()

    def _start(self, queue: str) -> None:
        slots = self.settings.heavy_slots if queue == HEAVY else self.settings.light_slots
        child = multiprocessing.get_context("fork").Process(
            target=_consume, args=(queue, slots), name=f"hemato-{queue}-consumer"
        )
        child.start()
        self.children[queue] = child

    def _beat(self) -> None:
        values = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queue": queue_id(self.settings),
            "heavy_slots": self.settings.heavy_slots,
            "light_slots": self.settings.light_slots,
            "heartbeat": time.time(),
        }
        with db.begin() as conn:
            db.upsert(conn, db.workers, {"id": self.id, "started": self.started, **values}, keys=("id",))

    def _busy(self) -> bool:
        with db.connect() as conn:
            return bool(
                conn.execute(select(func.count()).select_from(db.jobs).where(db.jobs.c.state.in_(ACTIVE))).scalar()
            )

    def _retire(self) -> bool:
        """Deregister, then look once more: a job submitted meanwhile saw this worker alive and spawned none."""
        with db.begin() as conn:
            conn.execute(db.workers.delete().where(db.workers.c.id == self.id))
        if self._busy():
            self._beat()
            return False
        return True

    def run(self) -> int:
        self.started = time.time()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda s, _frame: setattr(self, "stop_signal", s))
        reap_dead_jobs()  # jobs this machine was running before a crash
        self._beat()
        for queue in (HEAVY, LIGHT):
            self._start(queue)
        log.info(
            "worker %s: %d heavy, %d light slot(s) on %s",
            self.id,
            self.settings.heavy_slots,
            self.settings.light_slots,
            queue_id(self.settings),
        )
        last_beat = last_busy = time.time()
        try:
            while self.stop_signal is None:
                time.sleep(0.5)
                now = time.time()
                if now - last_beat >= HEARTBEAT_S:
                    self._beat()
                    last_beat = now
                    if self._busy():
                        last_busy = now
                    elif self.idle_exit is not None and now - last_busy > self.idle_exit:
                        if self._retire():
                            log.info("worker %s: idle for %.0f s, exiting", self.id, now - last_busy)
                            break
                        last_busy = now
                    if not self.settings.home.exists():
                        break
                for queue, child in list(self.children.items()):
                    if not child.is_alive():
                        log.warning("worker %s: %s consumer exited (%s); restarting", self.id, queue, child.exitcode)
                        self._start(queue)
        finally:
            self._stop()
        return 0

    def _stop(self) -> None:
        # SIGINT (Ctrl-C) lets running jobs finish, as huey's consumer does; anything else interrupts them.
        forward = signal.SIGINT if self.stop_signal == signal.SIGINT else signal.SIGTERM
        for child in self.children.values():
            if child.is_alive() and child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, forward)
        for child in self.children.values():
            child.join(None if forward == signal.SIGINT else 30)
        with contextlib.suppress(Exception), db.begin() as conn:
            conn.execute(db.workers.delete().where(db.workers.c.id == self.id))


def run_worker(idle_exit: float | None = None) -> int:
    """Run this machine's worker until stopped (or idle for ``idle_exit`` seconds); return an exit code."""
    settings = get_settings()
    with _machine_lock(settings) as mine:
        if not mine:
            print(f"A worker is already running on this machine for {settings.home}; not starting another.")
            return 0
        return _Supervisor(settings, idle_exit).run()


_SPAWNED: dict[str, subprocess.Popen] = {}
_SPAWN_LOCK = threading.Lock()


def ensure_worker(settings: Settings | None = None) -> int | None:
    """Start a local worker (``HEMATO_WORKER=auto``) unless one is alive; return the new process id, if any."""
    settings = settings or get_settings()
    if settings.worker_mode == "external" or alive_workers(settings):
        return None
    home = str(settings.home)
    with _SPAWN_LOCK:
        previous = _SPAWNED.get(home)
        if previous is not None and previous.poll() is None:
            return None  # started a moment ago and still registering
        logs = settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "worker.log").open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "hemato", "worker", "--idle-exit", str(int(SPAWN_IDLE_EXIT_S))],
                cwd=PROJECT_ROOT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _SPAWNED[home] = process
        return process.pid


def stop_spawned_workers(timeout: float = 30.0) -> None:
    """Stop the workers this process started (tests call it when a test's HEMATO_HOME goes away)."""
    with _SPAWN_LOCK:
        spawned = list(_SPAWNED.values())
        _SPAWNED.clear()
    for process in spawned:
        if process.poll() is None:
            process.terminate()
    for process in spawned:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
