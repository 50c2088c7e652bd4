"""The job layer with real worker processes: progress, cancel, a killed worker, slots, dedupe, failures, Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tests.fixtures.job_kinds  # noqa: F401 - registers the test job kinds in this process too
from hemato import jobs
from tests.fixtures.servers import RedisServer, start_redis
from tests.fixtures.workers import start_worker, stop_worker, worker_env


@pytest.fixture
def worker(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A real worker (one heavy and one light slot) on this test's HEMATO_HOME; the test never spawns one."""
    monkeypatch.setenv("HEMATO_WORKER", "external")
    proc = start_worker(worker_env(), tmp_path / "worker.log")
    try:
        yield proc
    finally:
        stop_worker(proc)


def until(check: Callable[[], jobs.Job | bool | None], timeout: float = 60.0, what: str = "") -> jobs.Job:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found  # type: ignore[return-value]
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def state_is(job_id: str, *states: str) -> Callable[[], jobs.Job | None]:
    def check() -> jobs.Job | None:
        current = jobs.get(job_id)
        return current if current.state in states else None

    return check


def test_progress_is_seen_while_the_job_runs(worker: subprocess.Popen) -> None:
    job = jobs.submit("test_heavy", {"steps": 30, "seconds": 0.1})
    assert job.state == "queued" and job.queue == "heavy" and job.label == "Counting (heavy)"
    midway = until(lambda: (j := jobs.get(job.id)).state == "running" and 0 < (j.done or 0) < 30 and j, what="progress")
    assert midway.total == 30 and midway.unit == "steps" and midway.phase == "counting"
    assert midway.worker and midway.worker.split(":")[1] != str(worker.pid), "jobs run in the worker's child"
    late = until(lambda: (j := jobs.get(job.id)).rate and j.eta_s is not None and j, what="a rate and an ETA")
    assert "/30 steps" in late.progress_text() and "steps/s" in late.progress_text() and "ETA" in late.progress_text()
    done = jobs.wait(job.id, timeout=60)
    assert done.state == "done" and done.fraction == 1.0 and done.result["steps"] == 30
    assert done.error == "" and done.finished >= done.started


def test_cancel_a_queued_and_a_running_job(worker: subprocess.Popen) -> None:
    running = jobs.submit("test_heavy", {"steps": 300, "seconds": 0.05})
    waiting = jobs.submit("test_heavy", {"steps": 5, "seconds": 0.05})
    until(state_is(running.id, "running"))
    assert jobs.get(waiting.id).state == "queued", "one heavy slot: the second heavy job waits"
    assert jobs.cancel(waiting.id).state == "cancelled"
    assert jobs.cancel(running.id).cancel_requested
    stopped = until(state_is(running.id, "cancelled", "done", "failed"), what="the running job to stop")
    assert stopped.state == "cancelled" and (stopped.done or 0) < 300
    time.sleep(1.5)  # the worker is free now; a revoked, cancelled job must still never start
    never = jobs.get(waiting.id)
    assert never.state == "cancelled" and never.started is None and never.done is None


def test_a_killed_worker_fails_its_job_with_the_reason(worker: subprocess.Popen) -> None:
    job = jobs.submit("test_heavy", {"steps": 600, "seconds": 0.1})
    running = until(lambda: (j := jobs.get(job.id)).state == "running" and j.done and j)
    pid = int(running.worker.rpartition(":")[2])
    os.kill(pid, signal.SIGKILL)
    failed = until(state_is(job.id, "failed"), timeout=30, what="the dead worker to be noticed")
    assert failed.error == jobs.DEAD_WORKER and "start it again" in failed.error
    # the key is free again, and the worker (its consumer restarted the killed process) runs the next job
    again = jobs.submit("test_heavy", {"steps": 3, "seconds": 0.01}, key=job.key)
    assert again.id != job.id
    assert jobs.wait(again.id, timeout=60).state == "done"


def test_killing_the_worker_supervisor_leaves_no_job_running(worker: subprocess.Popen) -> None:
    job = jobs.submit("test_light", {"steps": 600, "seconds": 0.1})
    running = until(lambda: (j := jobs.get(job.id)).state == "running" and j.done and j)
    child = int(running.worker.rpartition(":")[2])
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    failed = until(state_is(job.id, "failed"), timeout=40, what="the job of the dead worker to fail")
    assert failed.error in (jobs.DEAD_WORKER, jobs.INTERRUPTED)
    until(lambda: not jobs.pid_alive(child), timeout=20, what="the job's process to exit with its supervisor")


def test_heavy_jobs_queue_behind_each_other_while_a_light_job_runs(worker: subprocess.Popen) -> None:
    first = jobs.submit("test_heavy", {"steps": 20, "seconds": 0.1})
    second = jobs.submit("test_heavy", {"steps": 5, "seconds": 0.1})
    until(state_is(first.id, "running"))
    light = jobs.submit("test_light", {"steps": 3, "seconds": 0.1})
    assert jobs.wait(light.id, timeout=60).state == "done"
    assert jobs.get(first.id).state == "running", "the light job did not wait for the heavy one"
    assert jobs.get(second.id).state == "queued"
    a, b = jobs.wait(first.id, timeout=60), jobs.wait(second.id, timeout=60)
    assert a.state == b.state == "done"
    assert b.result["started"] >= a.result["finished"], "the second heavy job started after the first ended"
    assert jobs.get(light.id).result["finished"] < a.result["finished"]


def test_the_same_key_is_one_job(worker: subprocess.Popen) -> None:
    first = jobs.submit("test_light", {"steps": 10, "seconds": 0.1}, key="same")
    assert jobs.submit("test_light", {"steps": 10, "seconds": 0.1}, key="same").id == first.id
    assert jobs.find("test_light", "same").id == first.id
    assert jobs.wait(first.id, timeout=60).state == "done"
    assert jobs.submit("test_light", {}, key="same").id == first.id, "a done job is reused"
    fresh = jobs.submit("test_light", {"steps": 1, "seconds": 0}, key="same", force=True)
    assert fresh.id != first.id and jobs.find("test_light", "same").id == fresh.id
    assert jobs.submit("test_light", {}, key="other").id not in (first.id, fresh.id)
    assert len(jobs.list_jobs("test_light")) == 3


def test_a_failing_job_shows_its_message(worker: subprocess.Popen) -> None:
    message = "The folder /nowhere holds no images; pick a dataset with one sub-folder per class."
    failed = jobs.wait(jobs.submit("test_fail", {"message": message}, key="k").id, timeout=60)
    assert failed.state == "failed" and failed.error == message and failed.phase == "failed"
    assert "Traceback" in Path(failed.log_path).read_text() and "ValueError" in Path(failed.log_path).read_text()
    assert jobs.submit("test_fail", {"message": message}, key="k").id != failed.id, "a failed job is not reused"
    odd = jobs.wait(jobs.submit("test_fail", {"message": "x", "kind": "odd"}).id, timeout=60)
    assert odd.error == "ZeroDivisionError: x"


def test_bad_submissions_are_refused_clearly(isolated_home: Path) -> None:
    with pytest.raises(jobs.JobError, match="Unknown job kind 'nope'"):
        jobs.submit("nope")
    with pytest.raises(jobs.JobError, match="must be JSON"):
        jobs.submit("test_light", {"steps": object()})
    with pytest.raises(jobs.JobError, match="No job"):
        jobs.get("missing")


def test_format_eta_uses_tqdm() -> None:
    assert (jobs.format_eta(5), jobs.format_eta(125), jobs.format_eta(3725), jobs.format_eta(None)) == (
        "00:05",
        "02:05",
        "1:02:05",
        "…",
    )


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


def test_a_worker_on_another_machine_runs_jobs_through_redis(
    redis_server: RedisServer, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submitter and worker share only the database and Redis (each has its own HEMATO_HOME)."""
    monkeypatch.setenv("HEMATO_REDIS_URL", redis_server.url)
    monkeypatch.setenv("HEMATO_WORKER", "external")
    env = {**worker_env(), "HEMATO_HOME": str(tmp_path / "other_machine_home"), "HEMATO_DATABASE_URL": database_url}
    proc = start_worker(env, tmp_path / "remote_worker.log")
    try:
        job = jobs.submit("test_heavy", {"steps": 25, "seconds": 0.1})
        seen = until(lambda: (j := jobs.get(job.id)).state == "running" and j.done and j, what="remote progress")
        assert seen.worker.split(":")[1] not in (str(os.getpid()), str(proc.pid))
        done = jobs.wait(job.id, timeout=60)
        assert done.state == "done" and done.result["pid"] == int(seen.worker.split(":")[1])
        assert not (tmp_path / "hemato_home" / "jobs.sqlite3").exists(), "the queue was Redis, not SQLite"
    finally:
        stop_worker(proc)
