"""Durable quiz data in SQLite: students, quiz sets, attempts, every answer and Leitner cards.

Each call opens its own short-lived connection (WAL, busy timeout), so threads and Streamlit sessions never
share one, and every answer is committed the moment it is given. The training runs' tables live in the same
file (``hemato.training.runs``); every table here is prefixed ``quiz_``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hemato.teaching.quiz import (
    Answer,
    Card,
    Question,
    QuizError,
    grade_answer,
    new_code,
    normalise_code,
    require_instructor,
    update_card,
    validate_name,
)

BUSY_TIMEOUT_MS = 30_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS quiz_students (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quiz_sets (
    code TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    spec TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quiz_set_items (
    code TEXT NOT NULL REFERENCES quiz_sets(code),
    position INTEGER NOT NULL,
    path TEXT NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (code, position)
);
CREATE TABLE IF NOT EXISTS quiz_attempts (
    id INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES quiz_students(id),
    mode TEXT NOT NULL,
    quiz_code TEXT REFERENCES quiz_sets(code),
    n_questions INTEGER,
    time_limit_s REAL,
    model_name TEXT,
    questions TEXT,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS quiz_answers (
    id INTEGER PRIMARY KEY,
    attempt_id INTEGER NOT NULL REFERENCES quiz_attempts(id),
    question_index INTEGER NOT NULL,
    path TEXT NOT NULL,
    truth TEXT NOT NULL,
    answer TEXT NOT NULL,
    correct INTEGER NOT NULL,
    seconds REAL,
    model_pred TEXT,
    model_conf REAL,
    answered_at REAL NOT NULL,
    UNIQUE (attempt_id, question_index)
);
CREATE TABLE IF NOT EXISTS quiz_cards (
    student_id INTEGER NOT NULL REFERENCES quiz_students(id),
    path TEXT NOT NULL,
    box INTEGER NOT NULL,
    due_step INTEGER NOT NULL,
    PRIMARY KEY (student_id, path)
);
CREATE INDEX IF NOT EXISTS quiz_answers_attempt ON quiz_answers(attempt_id);
CREATE INDEX IF NOT EXISTS quiz_attempts_student ON quiz_attempts(student_id);
CREATE INDEX IF NOT EXISTS quiz_attempts_code ON quiz_attempts(quiz_code);
"""


class AlreadyAnsweredError(QuizError):
    """The same question of the same attempt was submitted twice."""


class UnknownQuizSetError(QuizError):
    """No quiz set has the given code."""


@dataclass(frozen=True)
class Student:
    """A student known by display name."""

    id: int
    name: str


@dataclass(frozen=True)
class QuizSet:
    """A fixed list of images shared by code."""

    code: str
    title: str
    spec: dict[str, Any]
    items: list[Question]
    created: float


@dataclass(frozen=True)
class Attempt:
    """One quiz taken by one student."""

    id: int
    student_id: int
    mode: str
    quiz_code: str | None
    n_questions: int | None
    time_limit_s: float | None
    model_name: str | None
    questions: list[Question] | None
    started: float
    finished: float | None


class QuizStore:
    """Quiz persistence in the SQLite file at ``db_path`` (created on first use)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE), so concurrent writers queue instead of failing."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------ students

    def get_or_create_student(self, name: str) -> Student:
        """The student with this display name (case-insensitive), created on first use.

        Raises:
            QuizError: The name is not valid (see :func:`hemato.teaching.quiz.validate_name`).
        """
        cleaned = validate_name(name)
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO quiz_students(name, created) VALUES (?, ?)", (cleaned, time.time()))
            row = conn.execute("SELECT id, name FROM quiz_students WHERE name = ?", (cleaned,)).fetchone()
        return Student(int(row["id"]), str(row["name"]))

    def list_students(self) -> list[Student]:
        """Every known student, by name."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, name FROM quiz_students ORDER BY name").fetchall()
        return [Student(int(r["id"]), str(r["name"])) for r in rows]

    # ------------------------------------------------------------ quiz sets

    def create_quiz_set(self, title: str, items: Sequence[Question], spec: dict[str, Any] | None = None) -> str:
        """Store a quiz set and return its new short code.

        Raises:
            QuizError: The set has no images.
        """
        if not items:
            raise QuizError("A quiz set needs at least one image.")
        title = (title or "").strip()[:80] or "Quiz"
        with self._write() as conn:
            for _ in range(20):
                code = new_code()
                if conn.execute("SELECT 1 FROM quiz_sets WHERE code = ?", (code,)).fetchone() is None:
                    break
            conn.execute(
                "INSERT INTO quiz_sets(code, title, spec, created) VALUES (?, ?, ?, ?)",
                (code, title, json.dumps(spec or {}), time.time()),
            )
            conn.executemany(
                "INSERT INTO quiz_set_items(code, position, path, label) VALUES (?, ?, ?, ?)",
                [(code, i, q.path, q.label) for i, q in enumerate(items)],
            )
        return code

    def get_quiz_set(self, code: str) -> QuizSet:
        """The quiz set with this code (typed codes are normalised).

        Raises:
            QuizError: The code is malformed.
            UnknownQuizSetError: No quiz set has this code.
        """
        cleaned = normalise_code(code)
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM quiz_sets WHERE code = ?", (cleaned,)).fetchone()
            if row is None:
                raise UnknownQuizSetError(f"No quiz has the code {cleaned}; check it with your instructor.")
            items = conn.execute(
                "SELECT path, label FROM quiz_set_items WHERE code = ? ORDER BY position", (cleaned,)
            ).fetchall()
        return QuizSet(
            cleaned,
            row["title"],
            json.loads(row["spec"]),
            [Question(r["path"], r["label"]) for r in items],
            row["created"],
        )

    def list_quiz_sets(self) -> list[QuizSet]:
        """Every quiz set, newest first."""
        with self._connect() as conn:
            codes = [r["code"] for r in conn.execute("SELECT code FROM quiz_sets ORDER BY created DESC")]
        return [self.get_quiz_set(code) for code in codes]

    # ------------------------------------------------------------ attempts and answers

    def start_attempt(
        self,
        student_id: int,
        mode: str,
        questions: Sequence[Question] | None = None,
        quiz_code: str | None = None,
        time_limit_s: float | None = None,
        model_name: str | None = None,
    ) -> Attempt:
        """Open a new attempt; ``questions`` fixes the list (exam, quiz set, challenge), ``None`` is endless."""
        qs = [q.__dict__ for q in questions] if questions is not None else None
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO quiz_attempts(student_id, mode, quiz_code, n_questions, time_limit_s, model_name, "
                "questions, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    student_id,
                    mode,
                    quiz_code,
                    len(qs) if qs is not None else None,
                    time_limit_s,
                    model_name,
                    json.dumps(qs) if qs is not None else None,
                    time.time(),
                ),
            )
            attempt_id = int(cur.lastrowid)
        return self.get_attempt(attempt_id)

    def get_attempt(self, attempt_id: int) -> Attempt:
        """One attempt by id.

        Raises:
            QuizError: No such attempt.
        """
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM quiz_attempts WHERE id = ?", (attempt_id,)).fetchone()
        if row is None:
            raise QuizError(f"Quiz attempt {attempt_id} does not exist; start a new quiz.")
        questions = [Question(**q) for q in json.loads(row["questions"])] if row["questions"] else None
        return Attempt(
            int(row["id"]),
            int(row["student_id"]),
            row["mode"],
            row["quiz_code"],
            row["n_questions"],
            row["time_limit_s"],
            row["model_name"],
            questions,
            row["started"],
            row["finished"],
        )

    def open_attempts(self, student_id: int) -> list[tuple[Attempt, int]]:
        """The student's unfinished attempts with a fixed question list, newest first, with answers given so far."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT t.id, COUNT(a.id) AS answered FROM quiz_attempts t "
                "LEFT JOIN quiz_answers a ON a.attempt_id = t.id "
                "WHERE t.student_id = ? AND t.finished IS NULL AND t.questions IS NOT NULL "
                "GROUP BY t.id HAVING answered < t.n_questions ORDER BY t.started DESC",
                (student_id,),
            ).fetchall()
        return [(self.get_attempt(int(r["id"])), int(r["answered"])) for r in rows]

    def finish_attempt(self, attempt_id: int) -> None:
        """Mark an attempt finished (idempotent)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE quiz_attempts SET finished = ? WHERE id = ? AND finished IS NULL", (time.time(), attempt_id)
            )

    def record_answer(
        self,
        attempt_id: int,
        question_index: int,
        question: Question,
        answer: str,
        seconds: float | None = None,
        model_pred: str | None = None,
        model_conf: float | None = None,
    ) -> Answer:
        """Grade and commit one answer, and move the image's Leitner card, in one transaction.

        Raises:
            AlreadyAnsweredError: This question of this attempt was already answered.
            QuizError: The attempt does not exist or is already finished.
        """
        correct = grade_answer(answer, question.label)
        with self._write() as conn:
            attempt = conn.execute(
                "SELECT student_id, finished FROM quiz_attempts WHERE id = ?", (attempt_id,)
            ).fetchone()
            if attempt is None:
                raise QuizError(f"Quiz attempt {attempt_id} does not exist; start a new quiz.")
            if attempt["finished"] is not None:
                raise QuizError("This quiz is already finished; start a new one to keep practising.")
            try:
                conn.execute(
                    "INSERT INTO quiz_answers(attempt_id, question_index, path, truth, answer, correct, seconds, "
                    "model_pred, model_conf, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        attempt_id,
                        question_index,
                        question.path,
                        question.label,
                        answer,
                        int(correct),
                        seconds,
                        model_pred,
                        model_conf,
                        time.time(),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyAnsweredError(
                    f"Question {question_index + 1} was already answered; your first answer counts."
                ) from exc
            student_id = int(attempt["student_id"])
            step = self._student_step(conn, student_id)
            row = conn.execute(
                "SELECT box, due_step FROM quiz_cards WHERE student_id = ? AND path = ?", (student_id, question.path)
            ).fetchone()
            card = update_card(Card(row["box"], row["due_step"]) if row else None, correct, step)
            conn.execute(
                "INSERT INTO quiz_cards(student_id, path, box, due_step) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(student_id, path) DO UPDATE SET box = excluded.box, due_step = excluded.due_step",
                (student_id, question.path, card.box, card.due_step),
            )
        return Answer(question_index, question.path, question.label, answer, correct, seconds, model_pred, model_conf)

    def attempt_answers(self, attempt_id: int) -> list[Answer]:
        """An attempt's answers in question order."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM quiz_answers WHERE attempt_id = ? ORDER BY question_index", (attempt_id,)
            ).fetchall()
        return [_answer(r) for r in rows]

    # ------------------------------------------------------------ spaced repetition

    @staticmethod
    def _student_step(conn: sqlite3.Connection, student_id: int) -> int:
        row = conn.execute(
            "SELECT COUNT(*) FROM quiz_answers a JOIN quiz_attempts t ON a.attempt_id = t.id WHERE t.student_id = ?",
            (student_id,),
        ).fetchone()
        return int(row[0])

    def student_step(self, student_id: int) -> int:
        """How many answers the student has given, over all attempts."""
        with self._connect() as conn:
            return self._student_step(conn, student_id)

    def cards(self, student_id: int) -> dict[str, Card]:
        """The student's Leitner cards by image path."""
        with self._connect() as conn:
            rows = conn.execute("SELECT path, box, due_step FROM quiz_cards WHERE student_id = ?", (student_id,))
            return {r["path"]: Card(int(r["box"]), int(r["due_step"])) for r in rows}

    def class_history(self, student_id: int) -> list[tuple[str, bool]]:
        """(true class, correct) for every answer the student gave."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT a.truth, a.correct FROM quiz_answers a JOIN quiz_attempts t ON a.attempt_id = t.id "
                "WHERE t.student_id = ? ORDER BY a.answered_at",
                (student_id,),
            ).fetchall()
        return [(r["truth"], bool(r["correct"])) for r in rows]

    # ------------------------------------------------------------ class-wide data (instructor only)

    def answers_frame(self, quiz_code: str | None = None) -> pd.DataFrame:
        """Every answer with student name and attempt info, optionally for one quiz set.

        Only :class:`hemato.teaching.store.InstructorView` should call this on behalf of a person.
        """
        query = (
            "SELECT s.name AS student, t.id AS attempt_id, t.mode, t.quiz_code, a.question_index, a.path, a.truth, "
            "a.answer, a.correct, a.seconds, a.model_pred, a.model_conf, a.answered_at "
            "FROM quiz_answers a JOIN quiz_attempts t ON a.attempt_id = t.id "
            "JOIN quiz_students s ON t.student_id = s.id"
        )
        params: tuple[Any, ...] = ()
        if quiz_code is not None:
            query += " WHERE t.quiz_code = ?"
            params = (normalise_code(quiz_code),)
        with self._connect() as conn:
            frame = pd.read_sql_query(query + " ORDER BY a.answered_at", conn, params=params)
        frame["correct"] = frame["correct"].astype(bool)
        return frame


def _answer(row: sqlite3.Row) -> Answer:
    return Answer(
        int(row["question_index"]),
        row["path"],
        row["truth"],
        row["answer"],
        bool(row["correct"]),
        row["seconds"],
        row["model_pred"],
        row["model_conf"],
    )


class InstructorView:
    """Class-wide results, reachable only with the configured instructor secret."""

    def __init__(self, store: QuizStore, given_secret: str | None, configured_secret: str | None) -> None:
        """Check the secret first.

        Raises:
            hemato.teaching.quiz.InstructorAccessError: No secret is configured or the given one is wrong.
        """
        require_instructor(given_secret, configured_secret)
        self._store = store

    @property
    def store(self) -> QuizStore:
        """The underlying store (for creating quiz sets)."""
        return self._store

    def answers(self, quiz_code: str | None = None) -> pd.DataFrame:
        """Every answer (optionally of one quiz set) with student names."""
        return self._store.answers_frame(quiz_code)

    def student_scores(self, quiz_code: str) -> pd.DataFrame:
        """Per student: answered, correct, score and mean seconds per question on one quiz set."""
        frame = self.answers(quiz_code)
        if frame.empty:
            return pd.DataFrame(columns=["student", "answered", "correct", "score", "mean_seconds"])
        table = frame.groupby("student").agg(
            answered=("correct", "size"), correct=("correct", "sum"), mean_seconds=("seconds", "mean")
        )
        table["score"] = table["correct"] / table["answered"]
        return table.reset_index()[["student", "answered", "correct", "score", "mean_seconds"]].sort_values(
            "score", ascending=False
        )

    def export_csv(self, quiz_code: str | None = None) -> str:
        """Answers as CSV text (for download)."""
        return self.answers(quiz_code).to_csv(index=False)
