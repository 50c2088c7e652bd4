"""AppTests for the Quiz, Instructor and Cell atlas pages, with and without a model."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hemato.config import get_settings
from hemato.teaching.quiz import Question
from hemato.teaching.store import QuizStore
from tests.conftest import PBC_MINI, project_path

QUIZ = project_path("pages", "6_Quiz.py")
INSTRUCTOR = project_path("pages", "7_Instructor.py")
ATLAS = project_path("pages", "8_Cell_Atlas.py")
TIMEOUT = 120


@pytest.fixture(autouse=True)
def mini_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(PBC_MINI))
    monkeypatch.delenv("HEMATO_INSTRUCTOR_SECRET", raising=False)


@pytest.fixture
def with_model(tiny_model_dir: Path) -> Path:
    """The tiny trained model installed as the default model of this test's models folder."""
    target = get_settings().default_model_dir
    shutil.copytree(tiny_model_dir, target)
    return target


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for kind in (at.error, at.warning, at.info, at.success):
        parts += [e.value for e in kind]
    return "\n".join(str(p) for p in parts)


def sign_in(at: AppTest, name: str) -> AppTest:
    at.text_input(key="quiz_name").input(name)
    return next(b for b in at.button if b.label == "Continue").click().run()


def answer(at: AppTest, choice: str) -> AppTest:
    radio = next(r for r in at.radio if str(r.key).startswith("quiz_choice"))
    radio.set_value(choice)
    return next(b for b in at.button if b.label == "Submit answer").click().run()


def rerun_until(at: AppTest, done, timeout: float = 240) -> None:
    """Rerun the page until ``done()`` holds (a background job finishes between reruns)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(1)
        at.run()
    assert done(), "timed out waiting for the background job"


def start(at: AppTest, mode: str, n: int | None = None, code: str | None = None) -> AppTest:
    at.radio(key="quiz_mode_choice").set_value(mode).run()
    if n is not None:
        at.number_input(key="quiz_n_questions").set_value(n)
    if code is not None:
        at.text_input(key="quiz_code_input").input(code)
    return at.button(key="quiz_start").click().run()


# ---------------------------------------------------------------- quiz


def test_quiz_refuses_bad_names() -> None:
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    assert not at.exception
    sign_in(at, "   ")
    assert "enter a display name" in at.error[0].value
    sign_in(at, "x" * 41)
    assert "at most 40" in at.error[0].value
    sign_in(at, "Robert'); DROP TABLE--")
    assert "letters, digits" in at.error[0].value
    assert "quiz_student" not in at.session_state


def test_exam_without_model_ends_with_report_and_is_stored() -> None:
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, " Ada ")
    assert "Signed in as **Ada**" in texts(at)
    start(at, "exam", n=3)
    assert "Question 1 of 3" in texts(at)
    for _ in range(3):
        assert not at.error  # no feedback during an exam
        answer(at, "MONOCYTE")
    assert not at.exception
    body = texts(at)
    assert "Your results" in [s.value for s in at.subheader]
    assert "Model on the same images" in [m.label for m in at.metric]
    assert next(m for m in at.metric if m.label == "Model on the same images").value == "no model yet"
    assert "Review question by question" in [s.value for s in at.subheader]
    assert "Key cue for" in body
    store = QuizStore()
    student = store.get_or_create_student("ada")
    assert store.student_step(student.id) == 3


def test_submit_without_choice_is_refused() -> None:
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, "Ada")
    start(at, "practice")
    next(b for b in at.button if b.label == "Submit answer").click().run()
    assert "Pick a class" in at.warning[0].value


def test_unknown_quiz_code_is_refused() -> None:
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, "Ada")
    start(at, "code", code="ZZZZZZ")
    assert "No quiz has the code ZZZZZZ" in at.error[0].value
    start(at, "code", code="hello world")
    assert "not a quiz code" in at.error[0].value


def test_quiz_set_code_runs_the_instructors_images() -> None:
    store = QuizStore()
    paths = sorted(PBC_MINI.glob("LYMPHOCYTE/*.jpg"))[:2]
    code = store.create_quiz_set("Week 1", [Question(str(p), "LYMPHOCYTE") for p in paths])
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, "Ada")
    start(at, "code", code=code.lower())
    assert f"Exam · quiz {code}" in [s.value for s in at.subheader]
    answer(at, "LYMPHOCYTE")
    answer(at, "LYMPHOCYTE")
    assert next(m for m in at.metric if m.label == "Score").value == "2 / 2 (100%)"


def test_practice_with_model_gives_feedback_verdict_and_gradcam(with_model: Path) -> None:
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, "Grace")
    start(at, "practice")
    next(b for b in at.button if b.label == "Hint").click().run()
    assert any(i.value.startswith("Hint:") for i in at.info)
    asked = at.session_state["quiz_session"]["current"]["label"]
    answer(at, "NEUTROPHIL")
    assert not at.exception
    body = texts(at)
    assert ("Correct: **Neutrophil**" in body) == (asked == "NEUTROPHIL")
    assert ("Not quite: you said **Neutrophil**" in body) == (asked != "NEUTROPHIL")
    assert "Key cue for" in body and "**Model:**" in body and "confident" in body
    assert len(at.get("image")) >= 2  # the question image and the Grad-CAM overlay
    next(b for b in at.button if b.label == "Finish and see my report").click().run()
    kappa = next(m for m in at.metric if m.label == "Agreement with model (κ)")
    assert kappa.value != "—"


def test_challenge_mode_uses_the_models_hardest_images(with_model: Path) -> None:
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, "Alan")
    at.radio(key="quiz_mode_choice").set_value("challenge").run()
    assert any("goes through the quiz images" in p.text for p in at.get("progress")), "the pool job is shown"
    rerun_until(at, lambda: any("quiz images wrong" in c.value for c in at.caption))
    start(at, "challenge", n=3)
    assert "Challenge the model" in [s.value for s in at.subheader]
    answer(at, "EOSINOPHIL")
    assert "**Model:**" in texts(at)


def test_students_never_see_other_students() -> None:
    store = QuizStore()
    eve = store.get_or_create_student("Eve Secretive")
    attempt = store.start_attempt(eve.id, "practice")
    store.record_answer(attempt.id, 0, Question(str(next(PBC_MINI.glob("MONOCYTE/*.jpg"))), "MONOCYTE"), "MONOCYTE")
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, "Ada")
    start(at, "exam", n=3)
    for _ in range(3):
        answer(at, "MONOCYTE")
    assert "Eve" not in texts(at)
    assert all("Eve" not in str(df.value) for df in at.dataframe)


# ---------------------------------------------------------------- instructor


def test_instructor_disabled_without_secret() -> None:
    at = AppTest.from_file(INSTRUCTOR, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "HEMATO_INSTRUCTOR_SECRET" in at.info[0].value and "secrets.toml" in at.info[0].value
    assert not at.tabs and not at.text_input


def test_instructor_needs_the_secret_before_showing_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    store = QuizStore()
    eve = store.get_or_create_student("Eve")
    code = store.create_quiz_set("Week 1", [Question(str(next(PBC_MINI.glob("MONOCYTE/*.jpg"))), "MONOCYTE")])
    attempt = store.start_attempt(eve.id, "exam", store.get_quiz_set(code).items, quiz_code=code)
    store.record_answer(attempt.id, 0, store.get_quiz_set(code).items[0], "LYMPHOCYTE")
    monkeypatch.setenv("HEMATO_INSTRUCTOR_SECRET", "s3cret")

    at = AppTest.from_file(INSTRUCTOR, default_timeout=TIMEOUT).run()
    assert not at.tabs and "Eve" not in texts(at) and code not in texts(at)
    at.text_input(key="instructor_secret_input").input("guess")
    next(b for b in at.button if b.label == "Unlock").click().run()
    assert "Wrong instructor secret" in at.error[0].value
    assert not at.tabs and "Eve" not in texts(at)

    at.text_input(key="instructor_secret_input").input("s3cret")
    next(b for b in at.button if b.label == "Unlock").click().run()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Create a quiz set", "Class results", "Presentation"]
    scores = at.dataframe[0].value
    assert scores["student"].tolist() == ["Eve"] and scores["correct"].tolist() == [0]


def test_instructor_creates_a_quiz_set_from_secrets_file() -> None:
    at = AppTest.from_file(INSTRUCTOR, default_timeout=TIMEOUT)
    at.secrets["instructor_secret"] = "from-file"
    at.run()
    at.text_input(key="instructor_secret_input").input("from-file")
    next(b for b in at.button if b.label == "Unlock").click().run()
    at.number_input(key="instr_size").set_value(4)
    next(b for b in at.button if b.label == "Create quiz set").click().run()
    assert "Quiz set created with 4 images" in at.success[0].value
    sets = QuizStore().list_quiz_sets()
    assert len(sets) == 1 and len(sets[0].items) == 4
    assert any(sets[0].code in m.value for m in at.markdown)
    # presentation: the answer stays hidden until revealed
    assert "The answer is hidden until you reveal it." in texts(at)
    next(b for b in at.button if b.label == "Reveal answer").click().run()
    assert sets[0].items[0].label.title() in texts(at)


# ---------------------------------------------------------------- atlas


def test_atlas_without_model() -> None:
    at = AppTest.from_file(ATLAS, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil", "Basophil"]
    body = texts(at)
    assert "Key cue" in body and "Normal share in adult blood" in body
    assert "not in the current dataset" in body  # Basophil: content but no images here
    assert "No model yet: hard examples appear once a model is trained." in body
    assert len(at.get("image")) >= 4 * 6


def test_atlas_class_without_content_is_graceful(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    for label in ("MONOCYTE", "PLATELET"):
        (data / label).mkdir(parents=True)
        for src in sorted(PBC_MINI.glob("MONOCYTE/*.jpg"))[:2]:
            shutil.copy(src, data / label / src.name)
    monkeypatch.setenv("HEMATO_DATA_DIR", str(data))
    at = AppTest.from_file(ATLAS, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Platelet" in [t.label for t in at.tabs]
    assert any("No atlas entry yet for **PLATELET**" in i.value for i in at.info)


def test_atlas_hard_examples_with_model(with_model: Path) -> None:
    at = AppTest.from_file(ATLAS, default_timeout=TIMEOUT).run()
    rerun_until(at, lambda: any("model:" in c for img in at.get("image") for c in img.captions))
    assert not at.exception
    captions = [c for img in at.get("image") for c in img.captions if "model:" in c]
    assert len(captions) >= 4  # hard examples with the model's verdict, per class


def test_timed_exam_ends_when_time_is_up() -> None:
    import sqlite3

    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, "Ada")
    at.radio(key="quiz_mode_choice").set_value("exam").run()
    at.number_input(key="quiz_n_questions").set_value(5)
    at.number_input(key="quiz_minutes").set_value(1.0)
    at.button(key="quiz_start").click().run()
    answer(at, "MONOCYTE")
    assert "Question 2 of 5" in texts(at)
    with sqlite3.connect(get_settings().db_path) as conn:  # pretend two minutes went by
        conn.execute("UPDATE quiz_attempts SET started = started - 120")
    at.run()
    assert "Time is up." in [w.value for w in at.warning]
    [first] = QuizStore().attempt_answers(at.session_state["quiz_session"]["attempt"])
    assert next(m for m in at.metric if m.label == "Score").value == ("1 / 5 (20%)" if first.correct else "0 / 5 (0%)")
    assert "4 question(s) unanswered count as wrong." in texts(at)


def test_unfinished_exam_can_be_resumed_in_a_new_session() -> None:
    at = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()
    sign_in(at, "Ada")
    start(at, "exam", n=3)
    answer(at, "MONOCYTE")
    fresh = AppTest.from_file(QUIZ, default_timeout=TIMEOUT).run()  # e.g. after a server restart
    sign_in(fresh, "ada")
    resume = next(b for b in fresh.button if b.label.startswith("Resume your unfinished exam"))
    assert "(1 of 3 answered)" in resume.label
    resume.click().run()
    assert "Question 2 of 3" in texts(fresh)
