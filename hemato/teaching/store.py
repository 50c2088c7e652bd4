"""Durable quiz data: students, quiz sets, attempts, every answer and Leitner cards (tables ``quiz_*``).

The tables and the connection helper are in :mod:`hemato.db` (SQLite under HEMATO_HOME, or PostgreSQL via
``HEMATO_DATABASE_URL``). Each call runs its own short transaction, so threads, Streamlit sessions and app
replicas never share one, and every answer is committed the moment it is given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, RowMapping, func, select

from hemato import db
from hemato.config import get_settings
from hemato.db import quiz_answers, quiz_attempts, quiz_cards, quiz_set_items, quiz_sets, quiz_students
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
    """Quiz persistence in one database (default: the settings' database, created and migrated on first use)."""

    def __init__(self, database: str | Path | None = None) -> None:
        """Open ``database``: a SQLAlchemy URL, a SQLite file path, or None for ``HEMATO_DATABASE_URL``/HEMATO_HOME."""
        if database is None:
            self.url = get_settings().db_url
        elif "://" in str(database):
            self.url = db.normalise_url(str(database))
        else:
            self.url = f"sqlite:///{Path(database)}"
        db.engine_for(self.url)

    # ------------------------------------------------------------ students

    def get_or_create_student(self, name: str) -> Student:
        """The student with this display name (case-insensitive), created on first use.

        Raises:
            QuizError: The name is not valid (see :func:`hemato.teaching.quiz.validate_name`).
        """
        cleaned = validate_name(name)
        with db.begin(self.url) as conn:
            db.insert_ignore(conn, quiz_students, {"name": cleaned, "created": time.time()})
            row = conn.execute(
                select(quiz_students.c.id, quiz_students.c.name).where(
                    func.lower(quiz_students.c.name) == func.lower(cleaned)
                )
            ).one()
        return Student(int(row.id), str(row.name))

    # ------------------------------------------------------------ quiz sets

    def create_quiz_set(self, title: str, items: Sequence[Question], spec: dict[str, Any] | None = None) -> str:
        """Store a quiz set and return its new short code.

        Raises:
            QuizError: The set has no images.
        """
        if not items:
            raise QuizError("A quiz set needs at least one image.")
        title = (title or "").strip()[:80] or "Quiz"
        with db.begin(self.url) as conn:
            for _ in range(20):
                code = new_code()
                if conn.execute(select(quiz_sets.c.code).where(quiz_sets.c.code == code)).first() is None:
                    break
            conn.execute(
                quiz_sets.insert().values(code=code, title=title, spec=json.dumps(spec or {}), created=time.time())
            )
            conn.execute(
                quiz_set_items.insert(),
                [{"code": code, "position": i, "path": q.path, "label": q.label} for i, q in enumerate(items)],
            )
        return code

    def get_quiz_set(self, code: str) -> QuizSet:
        """The quiz set with this code (typed codes are normalised).

        Raises:
            QuizError: The code is malformed.
            UnknownQuizSetError: No quiz set has this code.
        """
        cleaned = normalise_code(code)
        with db.connect(self.url) as conn:
            row = conn.execute(select(quiz_sets).where(quiz_sets.c.code == cleaned)).mappings().first()
            if row is None:
                raise UnknownQuizSetError(f"No quiz has the code {cleaned}; check it with your instructor.")
            items = conn.execute(
                select(quiz_set_items.c.path, quiz_set_items.c.label)
                .where(quiz_set_items.c.code == cleaned)
                .order_by(quiz_set_items.c.position)
            ).all()
        return QuizSet(
            cleaned, row["title"], json.loads(row["spec"]), [Question(r.path, r.label) for r in items], row["created"]
        )

    def list_quiz_sets(self) -> list[QuizSet]:
        """Every quiz set, newest first."""
        with db.connect(self.url) as conn:
            codes = conn.execute(select(quiz_sets.c.code).order_by(quiz_sets.c.created.desc())).scalars().all()
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
        with db.begin(self.url) as conn:
            result = conn.execute(
                quiz_attempts.insert().values(
                    student_id=student_id,
                    mode=mode,
                    quiz_code=quiz_code,
                    n_questions=len(qs) if qs is not None else None,
                    time_limit_s=time_limit_s,
                    model_name=model_name,
                    questions=json.dumps(qs) if qs is not None else None,
                    started=time.time(),
                )
            )
            attempt_id = int(result.inserted_primary_key[0])
        return self.get_attempt(attempt_id)

    def get_attempt(self, attempt_id: int) -> Attempt:
        """One attempt by id.

        Raises:
            QuizError: No such attempt.
        """
        with db.connect(self.url) as conn:
            row = conn.execute(select(quiz_attempts).where(quiz_attempts.c.id == attempt_id)).mappings().first()
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
        t, a = quiz_attempts, quiz_answers
        answered = func.count(a.c.id)
        query = (
            select(t.c.id, answered.label("answered"))
            .select_from(t.outerjoin(a, a.c.attempt_id == t.c.id))
            .where(t.c.student_id == student_id, t.c.finished.is_(None), t.c.questions.is_not(None))
            .group_by(t.c.id, t.c.n_questions, t.c.started)
            .having(answered < t.c.n_questions)
            .order_by(t.c.started.desc())
        )
        with db.connect(self.url) as conn:
            rows = conn.execute(query).all()
        return [(self.get_attempt(int(r.id)), int(r.answered)) for r in rows]

    def finish_attempt(self, attempt_id: int) -> None:
        """Mark an attempt finished (idempotent)."""
        with db.begin(self.url) as conn:
            conn.execute(
                quiz_attempts.update()
                .where(quiz_attempts.c.id == attempt_id, quiz_attempts.c.finished.is_(None))
                .values(finished=time.time())
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
        try:
            with db.begin(self.url) as conn:
                attempt = (
                    conn.execute(
                        select(quiz_attempts.c.student_id, quiz_attempts.c.finished).where(
                            quiz_attempts.c.id == attempt_id
                        )
                    )
                    .mappings()
                    .first()
                )
                if attempt is None:
                    raise QuizError(f"Quiz attempt {attempt_id} does not exist; start a new quiz.")
                if attempt["finished"] is not None:
                    raise QuizError("This quiz is already finished; start a new one to keep practising.")
                # Lock the student's row (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers): two
                # tabs answering at once are ordered, so neither reads a stale Leitner step count below.
                conn.execute(
                    select(quiz_students.c.id).where(quiz_students.c.id == attempt["student_id"]).with_for_update()
                )
                conn.execute(
                    quiz_answers.insert().values(
                        attempt_id=attempt_id,
                        question_index=question_index,
                        path=question.path,
                        truth=question.label,
                        answer=answer,
                        correct=int(correct),
                        seconds=seconds,
                        model_pred=model_pred,
                        model_conf=model_conf,
                        answered_at=time.time(),
                    )
                )
                student_id = int(attempt["student_id"])
                step = self._student_step(conn, student_id)
                row = conn.execute(
                    select(quiz_cards.c.box, quiz_cards.c.due_step).where(
                        quiz_cards.c.student_id == student_id, quiz_cards.c.path == question.path
                    )
                ).first()
                card = update_card(Card(row.box, row.due_step) if row else None, correct, step)
                db.upsert(
                    conn,
                    quiz_cards,
                    {"student_id": student_id, "path": question.path, "box": card.box, "due_step": card.due_step},
                    keys=("student_id", "path"),
                )
        except db.IntegrityError as exc:
            raise AlreadyAnsweredError(
                f"Question {question_index + 1} was already answered; your first answer counts."
            ) from exc
        return Answer(question_index, question.path, question.label, answer, correct, seconds, model_pred, model_conf)

    def attempt_answers(self, attempt_id: int) -> list[Answer]:
        """An attempt's answers in question order."""
        with db.connect(self.url) as conn:
            rows = (
                conn.execute(
                    select(quiz_answers)
                    .where(quiz_answers.c.attempt_id == attempt_id)
                    .order_by(quiz_answers.c.question_index)
                )
                .mappings()
                .all()
            )
        return [_answer(r) for r in rows]

    # ------------------------------------------------------------ spaced repetition

    @staticmethod
    def _student_step(conn: Connection, student_id: int) -> int:
        query = (
            select(func.count())
            .select_from(quiz_answers.join(quiz_attempts, quiz_answers.c.attempt_id == quiz_attempts.c.id))
            .where(quiz_attempts.c.student_id == student_id)
        )
        return int(conn.execute(query).scalar_one())

    def student_step(self, student_id: int) -> int:
        """How many answers the student has given, over all attempts."""
        with db.connect(self.url) as conn:
            return self._student_step(conn, student_id)

    def cards(self, student_id: int) -> dict[str, Card]:
        """The student's Leitner cards by image path."""
        with db.connect(self.url) as conn:
            rows = conn.execute(
                select(quiz_cards.c.path, quiz_cards.c.box, quiz_cards.c.due_step).where(
                    quiz_cards.c.student_id == student_id
                )
            ).all()
        return {r.path: Card(int(r.box), int(r.due_step)) for r in rows}

    def class_history(self, student_id: int) -> list[tuple[str, bool]]:
        """(true class, correct) for every answer the student gave."""
        query = (
            select(quiz_answers.c.truth, quiz_answers.c.correct)
            .select_from(quiz_answers.join(quiz_attempts, quiz_answers.c.attempt_id == quiz_attempts.c.id))
            .where(quiz_attempts.c.student_id == student_id)
            .order_by(quiz_answers.c.answered_at, quiz_answers.c.id)
        )
        with db.connect(self.url) as conn:
            rows = conn.execute(query).all()
        return [(r.truth, bool(r.correct)) for r in rows]

    # ------------------------------------------------------------ class-wide data (instructor only)

    def answers_frame(self, quiz_code: str | None = None) -> pd.DataFrame:
        """Every answer with student name and attempt info, optionally for one quiz set.

        Only :class:`hemato.teaching.store.InstructorView` should call this on behalf of a person.
        """
        s, t, a = quiz_students, quiz_attempts, quiz_answers
        query = select(
            s.c.name.label("student"),
            t.c.id.label("attempt_id"),
            t.c.mode,
            t.c.quiz_code,
            a.c.question_index,
            a.c.path,
            a.c.truth,
            a.c.answer,
            a.c.correct,
            a.c.seconds,
            a.c.model_pred,
            a.c.model_conf,
            a.c.answered_at,
        ).select_from(a.join(t, a.c.attempt_id == t.c.id).join(s, t.c.student_id == s.c.id))
        if quiz_code is not None:
            query = query.where(t.c.quiz_code == normalise_code(quiz_code))
        with db.connect(self.url) as conn:
            rows = conn.execute(query.order_by(a.c.answered_at, a.c.id)).all()
        frame = pd.DataFrame(rows, columns=[c.name for c in query.selected_columns])
        frame["correct"] = frame["correct"].astype(bool)
        return frame


def _answer(row: RowMapping) -> Answer:
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
