"""The one view of a background job (:mod:`hemato.jobs`), polled by a fragment on every page that starts one."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from sqlalchemy import func, select

from hemato import db, jobs

POLL_SECONDS = 1.0


def _ahead(job: jobs.Job) -> int:
    """Jobs of the same queue that will run before this queued one."""
    with db.connect() as conn:
        query = select(func.count()).select_from(db.jobs)
        query = query.where(
            db.jobs.c.queue == job.queue, db.jobs.c.state.in_(jobs.ACTIVE), db.jobs.c.created < job.created
        )
        return int(conn.execute(query).scalar_one())


def render_job(job: jobs.Job, key: str, cancel_label: str = "Cancel", cancel_help: str | None = None) -> None:
    """Progress bar with ``done/total unit · rate · ETA`` and phase, a Cancel button, or a clear failure box."""
    title = job.label or job.kind
    if job.state == "queued":
        jobs.ensure_worker()
        ahead = _ahead(job)
        wait = f"waiting for {ahead} {job.queue} job(s) to finish" if ahead else job.phase or "starting"
        st.progress(0.0, text=f"⏳ {title}: queued, {wait}")
    elif job.state == "running":
        detail = " · ".join(part for part in (job.phase, job.progress_text()) if part)
        st.progress(job.fraction, text=f"{title}: {detail or 'starting…'}")
    elif job.state == "failed":
        st.error(f"{title} failed: {job.error}")
        if job.log_path:
            st.caption(f"Details for whoever runs the app: `{job.log_path}`")
    elif job.state == "cancelled":
        st.info(f"{title} was stopped ({job.phase or 'cancelled'}).")
    if job.active and st.button(cancel_label, key=f"{key}_cancel_{job.id}", help=cancel_help):
        jobs.cancel(job.id)
        st.toast(f"Stopping {title.lower()}…")


def job_status(
    job_id: str,
    key: str,
    cancel_label: str = "Cancel",
    cancel_help: str | None = None,
    rerun_when_done: bool = True,
    body: Callable[[jobs.Job], None] | None = None,
) -> jobs.Job:
    """Show one job, refreshed every second while it is queued or running; reruns the page once it ends.

    Args:
        job_id: The job.
        key: Widget key prefix (unique on the page).
        cancel_label: Label of the button that cancels the job.
        cancel_help: Its tooltip.
        rerun_when_done: Rerun the whole page when the job ends, so the page can show its result.
        body: Drawn below the status on every refresh (e.g. live training curves).

    Returns:
        The job as first read (its state decides what else the page shows).
    """
    first = jobs.get(job_id)
    active = first.active

    @st.fragment(run_every=POLL_SECONDS if active else None)
    def poll() -> None:
        current = jobs.get(job_id)
        if active and not current.active and rerun_when_done:
            st.rerun(scope="app")  # the next full run draws the result, without a timer
        render_job(current, key, cancel_label, cancel_help)
        if body is not None:
            body(current)

    poll()
    return first
