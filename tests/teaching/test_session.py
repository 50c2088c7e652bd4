"""The quiz session's state machine: every transition, at given times, on SQLite and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest

from hemato.teaching.quiz import Question, QuizError
from hemato.teaching.session import Phase, QuizSession
from hemato.teaching.store import AlreadyAnsweredError, QuizStore

CLASSES = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"]
POOL = [Question(f"/img/{c}{i}.jpg", c) for c in CLASSES for i in range(4)]
T0 = 1_000_000.0


@pytest.fixture
def store(database_url: str) -> QuizStore:
    return QuizStore(database_url)


@pytest.fixture
def session(store: QuizStore) -> QuizSession:
    return QuizSession(store, store.get_or_create_student("Ada"), POOL, CLASSES, {})


def answer_correctly(session: QuizSession, now: float) -> None:
    state = session.state(now)
    session.submit(state.question.label, now)


def test_a_new_session_is_choosing(session: QuizSession) -> None:
    state = session.state(T0)
    assert state.phase == Phase.CHOOSING and state.attempt is None and state.classes == CLASSES
    with pytest.raises(QuizError, match="no open question"):
        session.submit("MONOCYTE", T0)


def test_practice_question_feedback_question_finished(session: QuizSession, store: QuizStore) -> None:
    session.start("practice")
    first = session.state(T0)
    assert first.phase == Phase.QUESTION and first.index == 0 and first.reason == "new"
    assert session.state(T0 + 1).question == first.question, "the same question on every rerun"
    assert first.progress == "Question 1 · new" and first.title == "Practice"
    session.shown(0, T0)
    session.shown(0, T0 + 3)  # a rerun does not restart the clock
    answer = session.submit(first.question.label, T0 + 4.5, verdict=("MONOCYTE", 0.8))
    assert answer.correct and answer.seconds == pytest.approx(4.5) and answer.model_pred == "MONOCYTE"
    feedback = session.state(T0 + 5)
    assert feedback.phase == Phase.FEEDBACK and feedback.answers[-1] == answer and feedback.question is None
    session.next()
    second = session.state(T0 + 6)
    assert second.phase == Phase.QUESTION and second.index == 1 and second.question != first.question
    session.finish()
    done = session.state(T0 + 7)
    assert done.phase == Phase.FINISHED and done.attempt.finished is not None
    report = session.report(done)
    assert (report.n_questions, report.n_correct) == (1, 1)
    session.leave()
    assert session.state(T0 + 8).phase == Phase.CHOOSING


def test_finishing_from_the_feedback_screen(session: QuizSession) -> None:
    session.start("practice")
    answer_correctly(session, T0)
    assert session.state(T0).phase == Phase.FEEDBACK
    session.finish()
    assert session.state(T0).phase == Phase.FINISHED


def test_exam_runs_through_its_questions_without_feedback(session: QuizSession) -> None:
    attempt = session.start("exam", n_questions=3, seed=1)
    assert attempt.questions == session.state(T0).attempt.questions and len(attempt.questions) == 3
    assert {q.label for q in attempt.questions} == set(CLASSES), "balanced over the classes"
    for i in range(3):
        state = session.state(T0 + i)
        assert state.phase == Phase.QUESTION and state.question == attempt.questions[i]
        assert state.progress == f"Question {i + 1} of 3" and state.title == "Exam"
        session.submit("EOSINOPHIL", T0 + i)
    done = session.state(T0 + 10)
    assert done.phase == Phase.FINISHED and done.attempt.finished is not None and done.unanswered == 0
    assert session.report(done).n_questions == 3


def test_a_timed_exam_ends_when_time_is_up(session: QuizSession, store: QuizStore) -> None:
    session.start("exam", n_questions=4, time_limit_min=1)
    started = session.state(T0).attempt.started
    session.submit("MONOCYTE", started + 10)
    running = session.state(started + 59)
    assert running.phase == Phase.QUESTION and running.seconds_left == pytest.approx(1)
    over = session.state(started + 61)
    assert over.phase == Phase.TIME_UP and over.seconds_left == 0 and over.unanswered == 3
    assert store.get_attempt(over.attempt.id).finished is not None, "time up is recorded"
    report = session.report(over)
    assert report.n_questions == 4 and report.n_answered == 1


def test_challenge_needs_the_models_verdicts_and_puts_mistakes_first(session: QuizSession) -> None:
    with pytest.raises(QuizError, match="needs the model's verdicts"):
        session.start("challenge", n_questions=2)
    assert session.state(T0).phase == Phase.CHOOSING
    predictions = pd.DataFrame(
        {
            "path": ["/img/a.jpg", "/img/b.jpg", "/img/c.jpg"],
            "label": ["MONOCYTE", "MONOCYTE", "EOSINOPHIL"],
            "pred": ["MONOCYTE", "EOSINOPHIL", "EOSINOPHIL"],
            "conf": [0.9, 0.8, 0.6],
            "true_prob": [0.9, 0.1, 0.6],
        }
    )
    attempt = session.start("challenge", n_questions=2, predictions=predictions)
    assert [q.path for q in attempt.questions] == ["/img/b.jpg", "/img/c.jpg"]
    session.submit("MONOCYTE", T0)
    assert session.state(T0).phase == Phase.FEEDBACK, "challenge mode gives feedback after each answer"
    assert session.state(T0).title == "Challenge the model"


def test_a_quiz_code_runs_the_instructors_set(session: QuizSession, store: QuizStore) -> None:
    code = store.create_quiz_set("Week 1", POOL[:2])
    with pytest.raises(QuizError, match="No quiz has the code"):
        session.start("code", code="ZZZZZZ")
    attempt = session.start("code", code=code.lower())
    assert attempt.quiz_code == code and attempt.questions == POOL[:2]
    assert session.state(T0).title == f"Exam · quiz {code}"


def test_unfinished_exam_resumes_in_a_new_session(session: QuizSession, store: QuizStore) -> None:
    attempt = session.start("exam", n_questions=3)
    session.submit("MONOCYTE", T0)
    later = QuizSession(store, session.student, POOL, CLASSES, {})  # another tab, or after a restart
    [(unfinished, answered)] = later.unfinished()
    assert unfinished.id == attempt.id and answered == 1
    later.resume(unfinished.id)
    state = later.state(T0 + 1)
    assert state.phase == Phase.QUESTION and state.index == 1 and state.question == attempt.questions[1]
    other = QuizSession(store, store.get_or_create_student("Eve"), POOL, CLASSES, {})
    with pytest.raises(QuizError, match="another student"):
        other.resume(attempt.id)


def test_the_same_question_answered_in_two_tabs_counts_once(session: QuizSession, store: QuizStore) -> None:
    session.start("exam", n_questions=3)
    twin = QuizSession(store, session.student, POOL, CLASSES, dict(session.data))
    session.submit("MONOCYTE", T0)
    with pytest.raises(AlreadyAnsweredError):
        twin.store.record_answer(int(twin.data["attempt"]), 0, session.state(T0).attempt.questions[0], "EOSINOPHIL")
    assert [a.answer for a in store.attempt_answers(int(session.data["attempt"]))] == ["MONOCYTE"]


def test_history_line_and_unknown_mode(session: QuizSession) -> None:
    assert session.history().startswith("No answers yet")
    session.start("practice")
    answer_correctly(session, T0)
    assert session.history().startswith("1 answers so far, 100% right.")
    with pytest.raises(QuizError, match="Unknown quiz mode"):
        session.start("speedrun")
