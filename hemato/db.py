"""The storage layer: the whole schema, its migrations and the one connection helper (SQLAlchemy Core 2.x).

Everything durable that is not a file lives here: students, quiz sets, attempts, answers and Leitner cards
(``quiz_*``), training runs (``runs``), background jobs (``jobs``) and the workers that run them
(``workers``). The database is the SQLite file under ``HEMATO_HOME`` by default, or whatever
``HEMATO_DATABASE_URL`` names (``postgresql://user@host/db`` for several app replicas); the same Core queries
run on both.

* :func:`connect` yields a connection for reads; :func:`begin` a write transaction committed on success
  (on SQLite it is ``BEGIN IMMEDIATE``, so concurrent writers queue behind the busy timeout instead of
  failing half-way; on PostgreSQL lock rows with ``select(...).with_for_update()`` where order matters).
* :func:`upsert` and :func:`insert_ignore` are the only dialect-specific statements (``ON CONFLICT``).
* Migrations: a one-row version table and :data:`MIGRATIONS`, ordered steps run once per database, each
  idempotent (step 1 creates missing tables in their current form; later steps check before altering).
  A small runner instead of Alembic because the schema is a handful of tables, the steps must also adopt
  SQLite files made by the raw ``CREATE TABLE IF NOT EXISTS`` code before this module existed (Alembic would
  need them stamped first), and the app migrates itself on first use without a separate command.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateIndex

from hemato.config import get_settings

__all__ = ["IntegrityError", "begin", "connect", "engine_for", "insert_ignore", "metadata", "upsert"]

BUSY_TIMEOUT_MS = 30_000
MAX_ENGINES = 8

metadata = MetaData()

quiz_students = Table(
    "quiz_students",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created", Float, nullable=False),
)
# Display names are unique regardless of case (SQLite files made before this module also carry the equivalent
# ``UNIQUE COLLATE NOCASE`` column constraint).
student_name_index = Index("quiz_students_name_lower", func.lower(quiz_students.c.name), unique=True)
quiz_sets = Table(
    "quiz_sets",
    metadata,
    Column("code", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("spec", Text, nullable=False),
    Column("created", Float, nullable=False),
)
quiz_set_items = Table(
    "quiz_set_items",
    metadata,
    Column("code", Text, ForeignKey("quiz_sets.code"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("label", Text, nullable=False),
    PrimaryKeyConstraint("code", "position"),
)
quiz_attempts = Table(
    "quiz_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("student_id", Integer, ForeignKey("quiz_students.id"), nullable=False),
    Column("mode", Text, nullable=False),
    Column("quiz_code", Text, ForeignKey("quiz_sets.code")),
    Column("n_questions", Integer),
    Column("time_limit_s", Float),
    Column("model_name", Text),
    Column("questions", Text),
    Column("started", Float, nullable=False),
    Column("finished", Float),
    Index("quiz_attempts_student", "student_id"),
    Index("quiz_attempts_code", "quiz_code"),
)
quiz_answers = Table(
    "quiz_answers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("attempt_id", Integer, ForeignKey("quiz_attempts.id"), nullable=False),
    Column("question_index", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("truth", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("correct", Integer, nullable=False),
    Column("seconds", Float),
    Column("model_pred", Text),
    Column("model_conf", Float),
    Column("answered_at", Float, nullable=False),
    UniqueConstraint("attempt_id", "question_index"),
    Index("quiz_answers_attempt", "attempt_id"),
)
quiz_cards = Table(
    "quiz_cards",
    metadata,
    Column("student_id", Integer, ForeignKey("quiz_students.id"), nullable=False),
    Column("path", Text, nullable=False),
    Column("box", Integer, nullable=False),
    Column("due_step", Integer, nullable=False),
    PrimaryKeyConstraint("student_id", "path"),
)
runs = Table(
    "runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created", Float, nullable=False),
    Column("status", Text, nullable=False),
    Column("backbone", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("folder", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("pid", Integer),
    Column("best_val_accuracy", Float),
    Column("test_accuracy", Float),
    Column("duration_s", Float),
    Column("message", Text, server_default=""),
    Column("job_id", Text),
)
jobs = Table(
    "jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    # ``kind|key`` while the job is queued, running or done, NULL once failed or cancelled: the unique
    # constraint makes "one live job per key" hold across processes and replicas without a lock.
    Column("live_key", Text, unique=True),
    Column("label", Text, nullable=False, server_default=""),
    Column("queue", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("phase", Text, nullable=False, server_default=""),
    Column("done", Float),
    Column("total", Float),
    Column("unit", Text, nullable=False, server_default=""),
    Column("rate", Float),
    Column("eta_s", Float),
    Column("params", Text, nullable=False),
    Column("result", Text),
    Column("result_path", Text),
    Column("error", Text, nullable=False, server_default=""),
    Column("log_path", Text),
    Column("worker", Text),
    Column("task_id", Text),
    Column("cancel_requested", Integer, nullable=False, server_default="0"),
    Column("created", Float, nullable=False),
    Column("started", Float),
    Column("finished", Float),
    Column("heartbeat", Float),
    Index("jobs_kind_key", "kind", "key"),
    Index("jobs_state", "state"),
)
workers = Table(
    "workers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queue", Text, nullable=False),
    Column("heavy_slots", Integer, nullable=False),
    Column("light_slots", Integer, nullable=False),
    Column("started", Float, nullable=False),
    Column("heartbeat", Float, nullable=False),
)
schema_version = Table("hemato_schema", metadata, Column("version", Integer, nullable=False))


# --------------------------------------------------------------------------------------------- migrations


def _create_missing_tables(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _add_runs_job_id(conn: Connection) -> None:
    if "job_id" not in {c["name"] for c in inspect(conn).get_columns("runs")}:
        conn.execute(text("ALTER TABLE runs ADD COLUMN job_id TEXT"))


def _case_insensitive_student_names(conn: Connection) -> None:
    conn.execute(CreateIndex(student_name_index, if_not_exists=True))  # reflection cannot see expression indexes


MIGRATIONS: tuple[tuple[str, Callable[[Connection], None]], ...] = (
    ("create the tables", _create_missing_tables),
    ("runs link their job", _add_runs_job_id),
    ("student names unique regardless of case", _case_insensitive_student_names),
)


def migrate(engine: Engine) -> int:
    """Bring the database up to date (run each missing step of :data:`MIGRATIONS` once); return its version."""
    with engine.connect() as conn, conn.execution_options(hemato_write=True).begin():
        if conn.dialect.name == "postgresql":  # replicas starting together migrate one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        schema_version.create(conn, checkfirst=True)
        version = conn.execute(select(schema_version.c.version)).scalar()
        if version is None:
            conn.execute(schema_version.insert().values(version=0))
            version = 0
        for _, step in MIGRATIONS[version:]:
            step(conn)
        conn.execute(schema_version.update().values(version=len(MIGRATIONS)))
    return len(MIGRATIONS)


# --------------------------------------------------------------------------------------------- engines


_ENGINES: OrderedDict[str, Engine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()


def normalise_url(url: str) -> str:
    """The SQLAlchemy URL for ``url``: ``postgresql://`` uses psycopg 3 (the driver in requirements.txt)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, emits BEGIN (see _sqlite_begin): consistent reads and real
    # savepoints, as in the SQLAlchemy docs' "Enabling Non-Legacy SQLite Transactional Modes".
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    for pragma in ("journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("hemato_write") else "BEGIN")


def _new_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=10, max_overflow=20, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    elif parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    else:
        raise ValueError(f"Unsupported database URL {parsed!r}: use sqlite:///FILE or postgresql://USER@HOST/DB.")
    migrate(engine)
    return engine


def engine_for(url: str | None = None) -> Engine:
    """The engine of ``url`` (default: the settings' database), created and migrated once per process."""
    url = normalise_url(url or get_settings().db_url)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _new_engine(url)
            while len(_ENGINES) > MAX_ENGINES:  # tests switch databases often: close the oldest
                _ENGINES.popitem(last=False)[1].dispose()
        _ENGINES.move_to_end(url)
        return engine


def _after_fork() -> None:
    # A forked worker must not reuse its parent's pooled connections (SQLAlchemy's multiprocessing advice).
    for engine in _ENGINES.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork)


@contextmanager
def connect(url: str | None = None) -> Iterator[Connection]:
    """A connection for reads (its transaction is rolled back on exit; use :func:`begin` to write)."""
    with engine_for(url).connect() as conn:
        yield conn


@contextmanager
def begin(url: str | None = None) -> Iterator[Connection]:
    """A write transaction, committed when the block ends and rolled back if it raises."""
    with engine_for(url).connect() as conn, conn.execution_options(hemato_write=True).begin():
        yield conn


# --------------------------------------------------------------------------------------------- statements


def _insert(conn: Connection, table: Table) -> Any:
    dialects = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    if conn.dialect.name not in dialects:
        raise ValueError(f"No ON CONFLICT support for {conn.dialect.name}.")
    return dialects[conn.dialect.name](table)


def upsert(conn: Connection, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Insert ``values`` into ``table``, or update the row whose ``keys`` columns match (``ON CONFLICT``)."""
    stmt = _insert(conn, table).values(**values)
    update = {name: stmt.excluded[name] for name in values if name not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update))


def insert_ignore(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert ``values`` unless a unique constraint already holds such a row; True when inserted."""
    result = conn.execute(_insert(conn, table).values(**values).on_conflict_do_nothing())
    return bool(result.rowcount)
