"""Quiz logic: names, question sampling, grading, reports, Leitner scheduling and quiz-set codes.

Pure functions on plain data; persistence lives in :mod:`hemato.teaching.store`, widgets in :mod:`hemato.ui.quiz`.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hemato.config import ENV_INSTRUCTOR_SECRET

NAME_MAX = 40
NAME_PATTERN = re.compile(r"^[\w][\w .'\-]*$")
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: codes are read aloud and typed
CODE_LENGTH = 6
MODES = ("practice", "exam", "challenge")
LEITNER_BOXES = 5
# Questions to wait before an image in box b (1-based) is due again: wrong answers (box 1) return soonest.
LEITNER_INTERVALS = (2, 4, 8, 16, 32)
WEAK_CLASS_BASE = 0.5
CHALLENGE_POOL_SIZE = 400


class QuizError(ValueError):
    """Bad quiz input (name, code, answer) with a message a student can act on."""


class InstructorAccessError(PermissionError):
    """Instructor data was requested without the configured secret."""


@dataclass(frozen=True)
class Question:
    """One image to classify and its true class."""

    path: str
    label: str


@dataclass(frozen=True)
class Answer:
    """A graded answer as stored (model columns are None when no model was available)."""

    question_index: int
    path: str
    truth: str
    answer: str
    correct: bool
    seconds: float | None = None
    model_pred: str | None = None
    model_conf: float | None = None


@dataclass(frozen=True)
class Card:
    """A student's Leitner state for one image."""

    box: int
    due_step: int


@dataclass
class QuizReport:
    """End-of-quiz summary."""

    n_questions: int
    n_answered: int
    n_correct: int
    per_class: pd.DataFrame
    student_confusion: pd.DataFrame
    model_confusion: pd.DataFrame | None
    model_accuracy: float | None
    kappa: float | None
    seconds: list[float]
    mistakes: list[Answer] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Correct answers over all questions of the quiz (unanswered count as wrong)."""
        return self.n_correct / self.n_questions if self.n_questions else 0.0

    @property
    def mean_seconds(self) -> float | None:
        """Mean time per answered question."""
        return float(np.mean(self.seconds)) if self.seconds else None


# ---------------------------------------------------------------- names and codes


def validate_name(name: str | None) -> str:
    """Trim and check a display name: 1–40 characters of letters, digits, spaces and . ' - _.

    Raises:
        QuizError: The name is empty, too long or uses other characters.
    """
    cleaned = re.sub(r"\s+", " ", (name or "").strip())
    if not cleaned:
        raise QuizError("Please enter a display name (1–40 characters).")
    if len(cleaned) > NAME_MAX:
        raise QuizError(f"That name is {len(cleaned)} characters long; use at most {NAME_MAX}.")
    if not NAME_PATTERN.match(cleaned):
        raise QuizError("Use letters, digits, spaces and . ' - _ only in your display name.")
    return cleaned


def new_code(rng: secrets.SystemRandom | None = None) -> str:
    """A fresh random quiz-set code such as ``K7QX2M``."""
    chooser = rng or secrets.SystemRandom()
    return "".join(chooser.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str | None) -> str:
    """Upper-case a typed code and drop spaces and dashes.

    Raises:
        QuizError: Nothing was typed, or the code cannot be one of ours.
    """
    cleaned = re.sub(r"[\s\-]", "", (code or "")).upper()
    if not cleaned:
        raise QuizError("Enter the quiz code your instructor gave you.")
    if len(cleaned) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in cleaned):
        raise QuizError(f"{code!r} is not a quiz code: codes have {CODE_LENGTH} letters/digits, e.g. K7QX2M.")
    return cleaned


# ---------------------------------------------------------------- instructor secret


def configured_secret(env: Mapping[str, str], secrets_map: Mapping[str, Any] | None) -> str | None:
    """The instructor secret from Streamlit secrets (``instructor_secret``) or the environment, if set."""
    candidates = [(secrets_map or {}).get("instructor_secret"), env.get(ENV_INSTRUCTOR_SECRET)]
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def check_secret(given: str | None, configured: str | None) -> bool:
    """Constant-time comparison of a typed secret with the configured one; False when none is configured."""
    if not configured or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), configured.encode())


def require_instructor(given: str | None, configured: str | None) -> None:
    """Raise unless ``given`` matches the configured instructor secret.

    Raises:
        InstructorAccessError: No secret is configured, or the given one is wrong.
    """
    if not configured:
        raise InstructorAccessError("Instructor mode is disabled: no instructor secret is configured.")
    if not check_secret(given, configured):
        raise InstructorAccessError("Wrong instructor secret.")


# ---------------------------------------------------------------- sampling


def questions_from_frame(frame: pd.DataFrame) -> list[Question]:
    """Turn dataset rows (``path``, ``label``) into questions."""
    return [Question(str(p), str(lbl)) for p, lbl in zip(frame["path"], frame["label"], strict=True)]


def sample_balanced(
    pool: Sequence[Question], size: int, seed: int, classes: Iterable[str] | None = None
) -> list[Question]:
    """Pick ``size`` questions spread as evenly as possible over ``classes``, deterministically for ``seed``.

    Args:
        pool: Candidate questions.
        size: Questions wanted (capped at what the pool holds).
        seed: Random seed; the same seed and pool give the same list.
        classes: Restrict to these classes (default: every class in the pool).

    Returns:
        The questions, shuffled.

    Raises:
        QuizError: ``size`` is not positive or no image matches the classes.
    """
    if size < 1:
        raise QuizError("A quiz needs at least one question.")
    wanted = sorted(set(classes) if classes is not None else {q.label for q in pool})
    by_class = {c: sorted((q for q in pool if q.label == c), key=lambda q: q.path) for c in wanted}
    by_class = {c: qs for c, qs in by_class.items() if qs}
    if not by_class:
        raise QuizError(f"No images of {', '.join(wanted) or 'any class'} in the dataset.")
    rng = np.random.default_rng(seed)
    queues = {c: [qs[i] for i in rng.permutation(len(qs))] for c, qs in by_class.items()}
    picked: list[Question] = []
    while len(picked) < size and any(queues.values()):
        for c in sorted(queues):
            if queues[c] and len(picked) < size:
                picked.append(queues[c].pop())
    return [picked[i] for i in rng.permutation(len(picked))]


def class_weights(history: Sequence[tuple[str, bool]], classes: Sequence[str]) -> dict[str, float]:
    """Sampling probability per class: weak classes (low smoothed accuracy) come up more often.

    weight(c) = 0.5 + (1 - (correct_c + 1) / (answered_c + 2)), normalised to sum to 1.
    """
    raw = {}
    for c in classes:
        answered = sum(1 for label, _ in history if label == c)
        correct = sum(1 for label, ok in history if label == c and ok)
        raw[c] = WEAK_CLASS_BASE + 1.0 - (correct + 1) / (answered + 2)
    total = sum(raw.values())
    return {c: w / total for c, w in raw.items()}


def leitner_box(box: int | None, correct: bool) -> int:
    """Next Leitner box: up one when right (max 5), back to box 1 when wrong; new images start in box 1."""
    current = box or 1
    return min(current + 1, LEITNER_BOXES) if correct else 1


def leitner_due(step: int, box: int) -> int:
    """The answer count at which an image placed in ``box`` after answer number ``step`` is due again."""
    return step + LEITNER_INTERVALS[box - 1]


def update_card(card: Card | None, correct: bool, step: int) -> Card:
    """A student's card after answering it as answer number ``step`` (1-based count of their answers)."""
    box = leitner_box(card.box if card else None, correct)
    return Card(box, leitner_due(step, box))


def pick_next_question(
    pool: Sequence[Question],
    cards: Mapping[str, Card],
    step: int,
    weights: Mapping[str, float],
    rng: np.random.Generator,
    avoid: Iterable[str] = (),
) -> tuple[Question, str]:
    """Choose the next practice question.

    Due images come first (lowest box, then most overdue); otherwise a class is drawn by ``weights`` and a
    new image of it is chosen (or its earliest-due seen image when all were seen).

    Args:
        pool: Candidate questions.
        cards: The student's Leitner cards by image path.
        step: How many answers the student has given so far.
        weights: Class sampling probabilities (see :func:`class_weights`).
        rng: Random generator.
        avoid: Paths not to repeat now (e.g. the previous question).

    Returns:
        The question and a short reason ("review", "new").

    Raises:
        QuizError: The pool is empty.
    """
    avoid_set = set(avoid)
    candidates = [q for q in pool if q.path not in avoid_set] or list(pool)
    if not candidates:
        raise QuizError("There are no images to quiz on: check the dataset on the Home page.")
    due = [q for q in candidates if q.path in cards and cards[q.path].due_step <= step]
    if due:
        due.sort(key=lambda q: (cards[q.path].box, cards[q.path].due_step, q.path))
        return due[0], f"review (box {cards[due[0].path].box})"
    present = sorted({q.label for q in candidates})
    probs = np.array([weights.get(c, 0.0) for c in present], dtype=float)
    probs = probs / probs.sum() if probs.sum() > 0 else np.full(len(present), 1 / len(present))
    label = present[int(rng.choice(len(present), p=probs))]
    of_class = [q for q in candidates if q.label == label]
    fresh = [q for q in of_class if q.path not in cards]
    if fresh:
        return fresh[int(rng.integers(len(fresh)))], "new"
    of_class.sort(key=lambda q: (cards[q.path].due_step, q.path))
    return of_class[0], "seen before"


def challenge_questions(predictions: pd.DataFrame, size: int) -> list[Question]:
    """Images the model gets wrong (most confident mistakes first), then those it is least sure of.

    Args:
        predictions: Columns ``path, label, pred, conf, true_prob`` (see :mod:`hemato.teaching.pool`).
        size: Questions wanted.
    """
    if predictions.empty:
        return []
    wrong = predictions[predictions["pred"] != predictions["label"]].sort_values("conf", ascending=False)
    right = predictions[predictions["pred"] == predictions["label"]].sort_values("conf", ascending=True)
    chosen = pd.concat([wrong, right]).head(size)
    return questions_from_frame(chosen)


# ---------------------------------------------------------------- grading and reports


def grade_answer(answer: str, truth: str) -> bool:
    """True when the chosen class is the true class (case-insensitive)."""
    return answer.strip().upper() == truth.strip().upper()


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa between two raters; 1.0 when they agree on everything (even a single class)."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b) or not a:
        raise ValueError("Kappa needs two equally long, non-empty lists of labels.")
    if list(a) == list(b):
        return 1.0
    return float(cohen_kappa_score(list(a), list(b)))


def confusion(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """Counts with true classes as rows and predicted classes as columns."""
    table = pd.DataFrame(0, index=list(classes), columns=list(classes), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        table.loc[t, p] += 1
    table.index.name = "true"
    table.columns.name = "answered"
    return table


def build_report(answers: Sequence[Answer], classes: Sequence[str], n_questions: int | None = None) -> QuizReport:
    """Score a finished (or timed-out) quiz.

    Args:
        answers: The graded answers.
        classes: Class order for the tables (labels seen in the answers are added).
        n_questions: Questions the quiz had; unanswered ones count as wrong. Defaults to ``len(answers)``.
    """
    labels = list(classes) + sorted({x for a in answers for x in (a.truth, a.answer)} - set(classes))
    rows = []
    for c in labels:
        of_class = [a for a in answers if a.truth == c]
        if of_class:
            correct = sum(a.correct for a in of_class)
            rows.append(
                {"class": c, "questions": len(of_class), "correct": correct, "accuracy": correct / len(of_class)}
            )
    per_class = pd.DataFrame(rows, columns=["class", "questions", "correct", "accuracy"])
    student_cm = confusion([a.truth for a in answers], [a.answer for a in answers], labels)
    with_model = [a for a in answers if a.model_pred]
    model_cm = kappa = model_accuracy = None
    if with_model:
        model_labels = labels + sorted({a.model_pred for a in with_model if a.model_pred not in labels})
        model_cm = confusion([a.truth for a in with_model], [a.model_pred for a in with_model], model_labels)
        model_cm.columns.name = "model"
        model_accuracy = sum(a.model_pred == a.truth for a in with_model) / len(with_model)
        kappa = cohen_kappa([a.answer for a in with_model], [a.model_pred for a in with_model])
    return QuizReport(
        n_questions=max(n_questions or 0, len(answers)),
        n_answered=len(answers),
        n_correct=sum(a.correct for a in answers),
        per_class=per_class,
        student_confusion=student_cm,
        model_confusion=model_cm,
        model_accuracy=model_accuracy,
        kappa=kappa,
        seconds=[a.seconds for a in answers if a.seconds is not None and math.isfinite(a.seconds)],
        mistakes=[a for a in answers if not a.correct],
    )


def hardest_images(answers: pd.DataFrame, top: int = 8) -> pd.DataFrame:
    """Images the class got wrong most often: ``path, truth, answers, correct, accuracy, common_answer``."""
    if answers.empty:
        return pd.DataFrame(columns=["path", "truth", "answers", "correct", "accuracy", "common_answer"])
    grouped = answers.groupby(["path", "truth"])
    table = grouped.agg(answers=("correct", "size"), correct=("correct", "sum")).reset_index()
    table["accuracy"] = table["correct"] / table["answers"]
    wrong = answers[~answers["correct"].astype(bool)]
    common = wrong.groupby("path")["answer"].agg(lambda s: s.value_counts().index[0]) if len(wrong) else {}
    table["common_answer"] = table["path"].map(common).fillna("—")
    return table.sort_values(["accuracy", "answers"], ascending=[True, False]).head(top).reset_index(drop=True)


# ---------------------------------------------------------------- the quiz pool


def quiz_pool(frame: pd.DataFrame, limit: int | None = None, seed: int = 0) -> list[Question]:
    """Quiz images: the test split when there is one (images models did not learn from), else everything.

    Args:
        frame: A dataset frame (``path, label, split``).
        limit: Keep at most this many, balanced over classes.
        seed: Seed for the balanced cut.
    """
    test = frame[frame["split"] == "test"] if "split" in frame and (frame["split"] == "test").any() else frame
    questions = questions_from_frame(test)
    if limit is not None and len(questions) > limit:
        questions = sorted(sample_balanced(questions, limit, seed), key=lambda q: (q.label, q.path))
    return questions


def seconds_left(started: float, limit_s: float | None, now: float) -> float | None:
    """Seconds left of a timed quiz (never negative); None when the quiz has no time limit."""
    if not limit_s:
        return None
    return max(0.0, started + limit_s - now)


def resolve_images(frame: pd.DataFrame, root: Path, names: Iterable[str]) -> tuple[list[Question], list[str]]:
    """Match typed image names (absolute path, path relative to the dataset root, or unique file name) to rows.

    Returns:
        The questions found (in the typed order, duplicates dropped) and the names that matched nothing.
    """
    by_path = dict(zip(frame["path"], frame["label"], strict=True))
    by_name: dict[str, list[str]] = {}
    for path in frame["path"]:
        by_name.setdefault(Path(path).name, []).append(path)
    found: list[Question] = []
    unknown: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        candidates = [name, str(Path(root) / name)]
        path = next((c for c in candidates if c in by_path), None)
        if path is None and len(by_name.get(Path(name).name, [])) == 1:
            path = by_name[Path(name).name][0]
        if path is None:
            unknown.append(name)
        elif all(q.path != path for q in found):
            found.append(Question(path, by_path[path]))
    return found, unknown


def class_vs_model(answers: pd.DataFrame, model_preds: Mapping[str, str]) -> pd.DataFrame:
    """Per true class: the class's accuracy over all answers and the model's accuracy on the same images."""
    columns = ["class", "answers", "class_accuracy", "images", "model_accuracy"]
    if answers.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for label, group in answers.groupby("truth"):
        images = sorted(set(group["path"]))
        judged = [p for p in images if p in model_preds]
        model_acc = sum(model_preds[p] == label for p in judged) / len(judged) if judged else float("nan")
        rows.append([label, len(group), float(group["correct"].mean()), len(images), model_acc])
    return pd.DataFrame(rows, columns=columns)


def history_summary(history: Sequence[tuple[str, bool]], cards: Mapping[str, Card], step: int) -> str:
    """One line about a student's record: answers, accuracy, weakest class and images due for review."""
    if not history:
        return "No answers yet: your history and spaced-repetition boxes start with your first answer."
    correct = sum(ok for _, ok in history)
    per_class: dict[str, list[bool]] = {}
    for label, ok in history:
        per_class.setdefault(label, []).append(ok)
    weakest, results = min(per_class.items(), key=lambda kv: (sum(kv[1]) / len(kv[1]), kv[0]))
    due = sum(1 for card in cards.values() if card.due_step <= step)
    return (
        f"{len(history)} answers so far, {correct / len(history):.0%} right. Weakest class: "
        f"{weakest.title()} ({sum(results) / len(results):.0%}), practised more often. "
        f"{due} image(s) due for review."
    )
