"""Durable quiz storage on SQLite and on a real PostgreSQL: persistence across re-opening and a killed process,
concurrent answers, bad input, and SQLite files made before the storage layer existed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hemato import db
from hemato.config import PROJECT_ROOT
from hemato.teaching.quiz import InstructorAccessError, Question, QuizError
from hemato.teaching.store import AlreadyAnsweredError, InstructorView, QuizStore, UnknownQuizSetError

QUESTIONS = [Question(f"/img/{c}{i}.jpg", c) for i in range(3) for c in ("EOSINOPHIL", "LYMPHOCYTE")]

# The schema as hemato/teaching/store.py and hemato/training/runs.py created it before hemato/db.py (main 3784ebf).
OLD_QUIZ_SCHEMA = """
CREATE TABLE IF NOT EXISTS quiz_students (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS quiz_sets (
    code TEXT PRIMARY KEY, title TEXT NOT NULL, spec TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS quiz_set_items (
    code TEXT NOT NULL REFERENCES quiz_sets(code), position INTEGER NOT NULL, path TEXT NOT NULL, label TEXT NOT NULL,
    PRIMARY KEY (code, position));
CREATE TABLE IF NOT EXISTS quiz_attempts (
    id INTEGER PRIMARY KEY, student_id INTEGER NOT NULL REFERENCES quiz_students(id), mode TEXT NOT NULL,
    quiz_code TEXT REFERENCES quiz_sets(code), n_questions INTEGER, time_limit_s REAL, model_name TEXT,
    questions TEXT, started REAL NOT NULL, finished REAL);
CREATE TABLE IF NOT EXISTS quiz_answers (
    id INTEGER PRIMARY KEY, attempt_id INTEGER NOT NULL REFERENCES quiz_attempts(id), question_index INTEGER NOT NULL,
    path TEXT NOT NULL, truth TEXT NOT NULL, answer TEXT NOT NULL, correct INTEGER NOT NULL, seconds REAL,
    model_pred TEXT, model_conf REAL, answered_at REAL NOT NULL, UNIQUE (attempt_id, question_index));
CREATE TABLE IF NOT EXISTS quiz_cards (
    student_id INTEGER NOT NULL REFERENCES quiz_students(id), path TEXT NOT NULL, box INTEGER NOT NULL,
    due_step INTEGER NOT NULL, PRIMARY KEY (student_id, path));
CREATE INDEX IF NOT EXISTS quiz_answers_attempt ON quiz_answers(attempt_id);
CREATE INDEX IF NOT EXISTS quiz_attempts_student ON quiz_attempts(student_id);
CREATE INDEX IF NOT EXISTS quiz_attempts_code ON quiz_attempts(quiz_code);
"""
OLD_RUNS_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created REAL NOT NULL, status TEXT NOT NULL, backbone TEXT NOT NULL, data TEXT NOT NULL,
    folder TEXT NOT NULL, config TEXT NOT NULL, pid INTEGER, best_val_accuracy REAL, test_accuracy REAL,
    duration_s REAL, message TEXT DEFAULT '')
"""


@pytest.fixture
def store(database_url: str) -> QuizStore:
    return QuizStore(database_url)


def _count(store: QuizStore, *where: object) -> int:
    with db.connect(store.url) as conn:
        return int(conn.execute(select(func.count()).select_from(db.quiz_answers).where(*where)).scalar_one())


def test_default_database_lives_under_hemato_home_in_wal_mode(isolated_home: Path) -> None:
    store = QuizStore()
    assert store.url == f"sqlite:///{isolated_home / 'hemato.sqlite3'}"
    store.get_or_create_student("Ada")
    with sqlite3.connect(isolated_home / "hemato.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"quiz_students", "quiz_answers", "runs", "jobs", "workers"} <= tables


def test_a_database_made_by_the_old_schema_keeps_working(isolated_home: Path) -> None:
    path = isolated_home / "hemato.sqlite3"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_QUIZ_SCHEMA)
        conn.execute(OLD_RUNS_SCHEMA)
        conn.execute("INSERT INTO quiz_students(name, created) VALUES ('Ada', 1.0)")
        conn.execute("INSERT INTO quiz_attempts(student_id, mode, started) VALUES (1, 'practice', 2.0)")
        conn.execute(
            "INSERT INTO quiz_answers(attempt_id, question_index, path, truth, answer, correct, answered_at) "
            "VALUES (1, 0, '/img/a.jpg', 'EOSINOPHIL', 'EOSINOPHIL', 1, 3.0)"
        )
        conn.execute("INSERT INTO quiz_cards VALUES (1, '/img/a.jpg', 2, 5)")
        conn.execute(
            "INSERT INTO runs (id, created, status, backbone, data, folder, config) "
            "VALUES ('r1', 4.0, 'done', 'small_cnn', '/data', '/runs/r1', '{}')"
        )
    store = QuizStore(path)
    ada = store.get_or_create_student("ADA")
    assert ada.id == 1 and ada.name == "Ada"
    assert store.student_step(ada.id) == 1 and store.cards(ada.id)["/img/a.jpg"].box == 2
    store.record_answer(1, 1, QUESTIONS[0], "EOSINOPHIL")
    with pytest.raises(AlreadyAnsweredError):
        store.record_answer(1, 0, QUESTIONS[0], "LYMPHOCYTE")
    assert store.class_history(ada.id) == [("EOSINOPHIL", True), ("EOSINOPHIL", True)]
    from hemato.training.runs import get_run

    run = get_run("r1")
    assert (run.status, run.backbone, run.job_id) == ("done", "small_cnn", None)
    with db.connect(store.url) as conn:
        assert conn.execute(select(db.schema_version.c.version)).scalar_one() == len(db.MIGRATIONS)
        assert conn.execute(select(func.count()).select_from(db.jobs)).scalar_one() == 0


def test_students_are_found_by_name_case_insensitively(store: QuizStore) -> None:
    ada = store.get_or_create_student("  Ada ")
    assert store.get_or_create_student("ADA") == ada
    assert store.get_or_create_student("Grace").id != ada.id
    with pytest.raises(QuizError):
        store.get_or_create_student("")
    with pytest.raises(QuizError):
        store.get_or_create_student("y" * 41)


def test_everything_survives_reopening(store: QuizStore) -> None:
    student = store.get_or_create_student("Ada")
    code = store.create_quiz_set("Week 1", QUESTIONS, {"kind": "fixed"})
    attempt = store.start_attempt(student.id, "exam", QUESTIONS, quiz_code=code, time_limit_s=60)
    store.record_answer(attempt.id, 0, QUESTIONS[0], "EOSINOPHIL", seconds=3.0, model_pred="EOSINOPHIL", model_conf=0.9)
    store.record_answer(attempt.id, 1, QUESTIONS[1], "MONOCYTE", seconds=4.0)

    reopened = QuizStore(store.url)
    assert reopened.get_or_create_student("ada").id == student.id
    assert reopened.get_quiz_set(code.lower()).items == QUESTIONS
    again = reopened.get_attempt(attempt.id)
    assert again.questions == QUESTIONS and again.quiz_code == code and again.time_limit_s == 60
    answers = reopened.attempt_answers(attempt.id)
    assert [(a.answer, a.correct) for a in answers] == [("EOSINOPHIL", True), ("MONOCYTE", False)]
    assert answers[0].model_pred == "EOSINOPHIL"
    # Leitner: the wrong image sits in box 1 and is due sooner than the right one (box 2)
    cards = reopened.cards(student.id)
    assert cards[QUESTIONS[1].path].box == 1 and cards[QUESTIONS[0].path].box == 2
    assert cards[QUESTIONS[1].path].due_step < cards[QUESTIONS[0].path].due_step
    assert reopened.student_step(student.id) == 2
    # the unfinished exam can be resumed after a restart, at question 3 of 6
    [(open_attempt, answered)] = reopened.open_attempts(student.id)
    assert open_attempt.id == attempt.id and answered == 2
    reopened.finish_attempt(attempt.id)
    assert reopened.open_attempts(student.id) == []
    assert reopened.class_history(student.id) == [("EOSINOPHIL", True), ("LYMPHOCYTE", False)]


def test_killed_process_loses_no_answer(store: QuizStore, tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from hemato.teaching.quiz import Question\n"
        "from hemato.teaching.store import QuizStore\n"
        "s = QuizStore(sys.argv[1])\n"
        "st = s.get_or_create_student('Killed')\n"
        "a = s.start_attempt(st.id, 'practice')\n"
        "for i in range(3):\n"
        "    s.record_answer(a.id, i, Question(f'/img/{i}.jpg', 'MONOCYTE'), 'MONOCYTE')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-c", script, store.url], env=env, timeout=60, check=False)
    assert proc.returncode == -9
    student = QuizStore(store.url).get_or_create_student("Killed")
    assert QuizStore(store.url).student_step(student.id) == 3


def test_double_submission_is_refused_clearly(store: QuizStore) -> None:
    student = store.get_or_create_student("Ada")
    attempt = store.start_attempt(student.id, "practice")
    store.record_answer(attempt.id, 0, QUESTIONS[0], "EOSINOPHIL")
    with pytest.raises(AlreadyAnsweredError, match="already answered"):
        store.record_answer(attempt.id, 0, QUESTIONS[0], "LYMPHOCYTE")
    assert [a.answer for a in store.attempt_answers(attempt.id)] == ["EOSINOPHIL"]
    assert store.student_step(student.id) == 1
    store.finish_attempt(attempt.id)
    with pytest.raises(QuizError, match="already finished"):
        store.record_answer(attempt.id, 1, QUESTIONS[1], "LYMPHOCYTE")


def test_unknown_quiz_code(store: QuizStore) -> None:
    with pytest.raises(UnknownQuizSetError, match="No quiz has the code"):
        store.get_quiz_set("ABCDEF")
    with pytest.raises(QuizError, match="not a quiz code"):
        store.get_quiz_set("??")
    with pytest.raises(QuizError, match="at least one image"):
        store.create_quiz_set("empty", [])


def test_twenty_students_answering_at_once(store: QuizStore) -> None:
    n_students, n_questions = 20, 5
    barrier = threading.Barrier(n_students)
    errors: list[BaseException] = []
    refused: list[str] = []

    def student_session(i: int) -> None:
        try:
            own = QuizStore(store.url)  # each session opens the database itself, like a Streamlit session
            student = own.get_or_create_student(f"Student {i:02d}")
            attempt = own.start_attempt(student.id, "exam", QUESTIONS[:n_questions])
            barrier.wait(timeout=30)
            for q in range(n_questions):
                own.record_answer(attempt.id, q, QUESTIONS[q], "EOSINOPHIL", seconds=1.0)
                try:  # an impatient double click on the same question
                    own.record_answer(attempt.id, q, QUESTIONS[q], "LYMPHOCYTE")
                except AlreadyAnsweredError as exc:
                    refused.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - collected and asserted on in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=student_session, args=(i,)) for i in range(n_students)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(refused) == n_students * n_questions
    answers = db.quiz_answers
    with db.connect(store.url) as conn:
        distinct = conn.execute(
            select(func.count()).select_from(
                select(answers.c.attempt_id, answers.c.question_index).distinct().subquery()
            )
        ).scalar_one()
        students = conn.execute(select(func.count()).select_from(db.quiz_students)).scalar_one()
    assert _count(store) == distinct == n_students * n_questions
    assert _count(store, answers.c.answer == "LYMPHOCYTE") == 0
    assert students == n_students


def test_same_question_from_two_tabs_at_once_is_stored_once(store: QuizStore) -> None:
    student = store.get_or_create_student("Ada")
    attempt = store.start_attempt(student.id, "practice")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def submit(answer: str) -> None:
        barrier.wait(timeout=30)
        try:
            QuizStore(store.url).record_answer(attempt.id, 0, QUESTIONS[0], answer)
            outcomes.append("stored")
        except AlreadyAnsweredError:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit, args=("EOSINOPHIL",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["refused"] * 7 + ["stored"]
    assert len(store.attempt_answers(attempt.id)) == 1


def test_instructor_data_refused_without_the_secret(store: QuizStore) -> None:
    student = store.get_or_create_student("Ada")
    code = store.create_quiz_set("Week 1", QUESTIONS)
    attempt = store.start_attempt(student.id, "exam", QUESTIONS, quiz_code=code)
    store.record_answer(attempt.id, 0, QUESTIONS[0], "EOSINOPHIL", model_pred="LYMPHOCYTE", model_conf=0.8)
    store.record_answer(attempt.id, 1, QUESTIONS[1], "EOSINOPHIL")
    for given, configured in [(None, None), ("guess", None), ("wrong", "s3cret"), ("", "s3cret")]:
        with pytest.raises(InstructorAccessError):
            InstructorView(store, given, configured)
    view = InstructorView(store, "s3cret", "s3cret")
    scores = view.student_scores(code)
    assert scores.to_dict("records")[0]["student"] == "Ada"
    assert scores.iloc[0]["score"] == pytest.approx(0.5)
    csv_text = view.export_csv(code)
    assert csv_text.splitlines()[0].startswith("student,") and len(csv_text.splitlines()) == 3


def test_a_wrong_image_comes_back_in_later_practice(store: QuizStore) -> None:
    import numpy as np

    from hemato.teaching.quiz import class_weights, pick_next_question

    pool = [Question(f"/img/{c}{i}.jpg", c) for c in ("EOSINOPHIL", "LYMPHOCYTE") for i in range(10)]
    student = store.get_or_create_student("Ada")
    first = store.start_attempt(student.id, "practice")
    store.record_answer(first.id, 0, pool[0], "LYMPHOCYTE")  # wrong: box 1, due two answers later
    store.record_answer(first.id, 1, pool[15], "LYMPHOCYTE")  # right: box 2
    store.finish_attempt(first.id)

    later = QuizStore(store.url)  # a later session, after a restart
    rng = np.random.default_rng(0)
    weights = class_weights(later.class_history(student.id), ["EOSINOPHIL", "LYMPHOCYTE"])
    assert weights["EOSINOPHIL"] > weights["LYMPHOCYTE"]  # the weak class is drawn more often
    second = later.start_attempt(student.id, "practice")
    later.record_answer(second.id, 0, pool[5], "EOSINOPHIL")
    question, reason = pick_next_question(
        pool, later.cards(student.id), later.student_step(student.id), weights, rng, avoid=[pool[5].path]
    )
    assert question == pool[0] and reason == "review (box 1)"
