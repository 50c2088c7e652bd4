"""One student's quiz in one browser session: the state machine the Quiz page draws.

States (:class:`Phase`): ``choosing`` a mode → ``question`` → (practice and challenge) ``feedback`` on the
answer just given → ``question`` … → ``finished`` (all questions answered, or the student finished an open-ended
practice) or ``time up`` (a timed exam ran out). Everything durable goes to :class:`~hemato.teaching.store.QuizStore`
at once; what only this browser tab needs (which attempt is open, whose feedback is showing, when a question was
first shown, the practice question picked for this turn) lives in ``data``, a plain dict the page keeps in its
session state.
"""

from __future__ import annotations

import secrets
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from hemato.teaching.quiz import (
    Answer,
    Question,
    QuizError,
    QuizReport,
    build_report,
    challenge_questions,
    class_weights,
    history_summary,
    pick_next_question,
    sample_balanced,
    seconds_left,
)
from hemato.teaching.store import Attempt, QuizStore, Student

FEEDBACK_MODES = ("practice", "challenge")
TITLES = {"practice": "Practice", "exam": "Exam", "challenge": "Challenge the model"}


class Phase(StrEnum):
    """What the quiz page shows."""

    CHOOSING = "choosing"
    QUESTION = "question"
    FEEDBACK = "feedback"
    FINISHED = "finished"
    TIME_UP = "time up"


@dataclass
class SessionState:
    """A snapshot of the session at one moment (see :meth:`QuizSession.state`)."""

    phase: Phase
    attempt: Attempt | None = None
    answers: list[Answer] = field(default_factory=list)
    question: Question | None = None
    reason: str = ""
    seconds_left: float | None = None
    classes: list[str] = field(default_factory=list)

    @property
    def index(self) -> int:
        """The number of the question being asked (0-based), i.e. answers given so far."""
        return len(self.answers)

    @property
    def title(self) -> str:
        """The heading of the running quiz (mode, and the quiz set's code)."""
        if self.attempt is None:
            return ""
        title = TITLES.get(self.attempt.mode, self.attempt.mode)
        return f"{title} · quiz {self.attempt.quiz_code}" if self.attempt.quiz_code else title

    @property
    def progress(self) -> str:
        """``Question 3 of 10`` for fixed lists, ``Question 3 · new`` for practice."""
        if self.attempt is not None and self.attempt.questions is not None:
            return f"Question {self.index + 1} of {len(self.attempt.questions)}"
        return f"Question {self.index + 1} · {self.reason}"

    @property
    def unanswered(self) -> int:
        """Questions of a fixed list left unanswered (time up)."""
        if self.attempt is None or self.attempt.questions is None:
            return 0
        return max(0, len(self.attempt.questions) - self.index)


class QuizSession:
    """Start a mode, get the question to ask, submit answers, move on, and read the state at a given time."""

    def __init__(
        self,
        store: QuizStore,
        student: Student,
        pool: Sequence[Question],
        classes: Sequence[str],
        data: MutableMapping[str, Any] | None = None,
    ) -> None:
        """Bind a student's session to its store and quiz pool.

        Args:
            store: Where attempts and answers are kept.
            student: The signed-in student.
            pool: The images quizzes draw from (:func:`hemato.teaching.quiz.quiz_pool`).
            classes: The dataset's classes (answer choices).
            data: The per-tab state (the page's session state entry; a fresh dict when omitted).
        """
        self.store = store
        self.student = student
        self.pool = list(pool)
        self.classes = list(classes)
        self.data: MutableMapping[str, Any] = data if data is not None else {}

    # ------------------------------------------------------------ transitions

    def start(
        self,
        mode: str,
        n_questions: int = 10,
        time_limit_min: float = 0.0,
        code: str = "",
        model_name: str | None = None,
        predictions: pd.DataFrame | None = None,
        seed: int | None = None,
    ) -> Attempt:
        """Open an attempt: ``practice``, ``exam``, ``challenge`` (needs ``predictions``) or ``code`` (a quiz set).

        Raises:
            QuizError: The mode cannot start (unknown code, no images, no model verdicts for a challenge).
        """
        seed = secrets.randbelow(2**31) if seed is None else seed
        sid = self.student.id
        if mode == "practice":
            attempt = self.store.start_attempt(sid, "practice", model_name=model_name)
        elif mode == "exam":
            questions = sample_balanced(self.pool, int(n_questions), seed=seed)
            limit = float(time_limit_min) * 60 or None
            attempt = self.store.start_attempt(sid, "exam", questions, time_limit_s=limit, model_name=model_name)
        elif mode == "challenge":
            if predictions is None or predictions.empty:
                raise QuizError("Challenge mode needs the model's verdicts on the quiz images; wait for them.")
            questions = challenge_questions(predictions, int(n_questions))
            attempt = self.store.start_attempt(sid, "challenge", questions, model_name=model_name)
        elif mode == "code":
            quiz_set = self.store.get_quiz_set(code)
            attempt = self.store.start_attempt(
                sid, "exam", quiz_set.items, quiz_code=quiz_set.code, model_name=model_name
            )
        else:
            raise QuizError(f"Unknown quiz mode {mode!r}.")
        self._open(attempt.id)
        return attempt

    def resume(self, attempt_id: int) -> None:
        """Continue one of the student's unfinished attempts (e.g. after a restart or in a new tab).

        Raises:
            QuizError: The attempt does not exist or belongs to someone else.
        """
        attempt = self.store.get_attempt(attempt_id)
        if attempt.student_id != self.student.id:
            raise QuizError("That quiz belongs to another student.")
        self._open(attempt_id)

    def _open(self, attempt_id: int) -> None:
        self.data.clear()
        self.data["attempt"] = attempt_id

    def shown(self, index: int, now: float) -> None:
        """Remember when question ``index`` was first shown (for the time per question)."""
        self.data.setdefault("shown", {}).setdefault(str(index), now)

    def submit(self, choice: str, now: float, verdict: tuple[str, float] | None = None) -> Answer:
        """Grade and store the answer to the current question; practice and challenge then show feedback.

        Args:
            choice: The class the student picked.
            now: The time of the answer (seconds since the epoch).
            verdict: The model's (class, confidence) for the image, when there is a model.

        Raises:
            QuizError: No question is being asked (or the quiz is over).
            AlreadyAnsweredError: This question was already answered (e.g. in another tab).
        """
        state = self.state(now)
        if state.phase != Phase.QUESTION or state.question is None or state.attempt is None:
            raise QuizError("There is no open question to answer; start or resume a quiz.")
        shown = self.data.get("shown", {}).get(str(state.index))
        answer = self.store.record_answer(
            state.attempt.id,
            state.index,
            state.question,
            choice,
            now - shown if shown is not None else None,
            model_pred=verdict[0] if verdict else None,
            model_conf=verdict[1] if verdict else None,
        )
        if state.attempt.mode in FEEDBACK_MODES:
            self.data["feedback"] = state.index
        return answer

    def next(self) -> None:
        """Leave the feedback of the last answer for the next question."""
        self.data.pop("feedback", None)

    def finish(self) -> None:
        """End the open attempt now (open-ended practice, or from the feedback screen)."""
        if self.data.get("attempt") is not None:
            self.store.finish_attempt(int(self.data["attempt"]))
        self.data.pop("feedback", None)

    def leave(self) -> None:
        """Back to choosing a mode (the attempt and its answers stay stored)."""
        self.data.clear()

    # ------------------------------------------------------------ reading

    def state(self, now: float) -> SessionState:
        """What to show at time ``now``; a quiz that is over (all answered, time up) is recorded as finished."""
        attempt_id = self.data.get("attempt")
        if attempt_id is None:
            return SessionState(Phase.CHOOSING, classes=self.classes)
        attempt = self.store.get_attempt(int(attempt_id))
        answers = self.store.attempt_answers(attempt.id)
        index = len(answers)
        fixed = attempt.questions is not None
        classes = sorted(set(self.classes) | {q.label for q in attempt.questions or []})
        left = seconds_left(attempt.started, attempt.time_limit_s, now)
        pending = attempt.mode in FEEDBACK_MODES and index > 0 and self.data.get("feedback") == index - 1
        over = attempt.finished is not None or (fixed and index >= len(attempt.questions or [])) or left == 0
        base = {"attempt": attempt, "answers": answers, "seconds_left": left, "classes": classes}
        if pending:
            return SessionState(Phase.FEEDBACK, **base)
        if over:
            if attempt.finished is None:
                self.store.finish_attempt(attempt.id)
                base["attempt"] = self.store.get_attempt(attempt.id)
            timed_out = left == 0 and fixed and index < len(attempt.questions or [])
            return SessionState(Phase.TIME_UP if timed_out else Phase.FINISHED, **base)
        question, reason = self._question(attempt, index)
        return SessionState(Phase.QUESTION, question=question, reason=reason, **base)

    def _question(self, attempt: Attempt, index: int) -> tuple[Question, str]:
        """The question number ``index``: from the fixed list, or the practice pick for this turn (kept for reruns)."""
        if attempt.questions is not None:
            return attempt.questions[index], ""
        current = self.data.get("current")
        if current and current["index"] == index:
            return Question(current["path"], current["label"]), current["reason"]
        sid = self.student.id
        question, reason = pick_next_question(
            self.pool,
            self.store.cards(sid),
            self.store.student_step(sid),
            class_weights(self.store.class_history(sid), self.classes),
            np.random.default_rng(),
            avoid=[current["path"]] if current else [],
        )
        self.data["current"] = {"index": index, "path": question.path, "label": question.label, "reason": reason}
        return question, reason

    def report(self, state: SessionState) -> QuizReport:
        """The report of a finished (or timed-out) quiz; unanswered exam questions count as wrong."""
        n = state.attempt.n_questions if state.attempt is not None and state.attempt.mode == "exam" else None
        return build_report(state.answers, self.classes, n)

    def unfinished(self) -> list[tuple[Attempt, int]]:
        """The student's latest unfinished fixed-list attempt with its answers so far (at most one)."""
        return self.store.open_attempts(self.student.id)[:1]

    def history(self) -> str:
        """One line about the student's record (answers, accuracy, weakest class, reviews due)."""
        sid = self.student.id
        return history_summary(self.store.class_history(sid), self.store.cards(sid), self.store.student_step(sid))
