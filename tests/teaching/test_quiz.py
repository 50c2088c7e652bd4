"""Quiz logic against hand-computed cases: names, codes, scoring, kappa, Leitner scheduling, sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hemato.data.datasets import discover_dataset
from hemato.teaching.quiz import (
    LEITNER_INTERVALS,
    Answer,
    Card,
    InstructorAccessError,
    Question,
    QuizError,
    build_report,
    challenge_questions,
    check_secret,
    class_weights,
    cohen_kappa,
    configured_secret,
    grade_answer,
    hardest_images,
    leitner_box,
    normalise_code,
    pick_next_question,
    quiz_pool,
    require_instructor,
    sample_balanced,
    update_card,
    validate_name,
)


def test_validate_name_trims_and_refuses_bad_names() -> None:
    assert validate_name("  Ada   Lovelace ") == "Ada Lovelace"
    assert validate_name("José-María O'Neil") == "José-María O'Neil"
    assert validate_name("x" * 40) == "x" * 40
    with pytest.raises(QuizError, match="enter a display name"):
        validate_name("   ")
    with pytest.raises(QuizError, match="at most 40"):
        validate_name("x" * 41)
    with pytest.raises(QuizError, match="letters, digits"):
        validate_name("<script>")


def test_normalise_code() -> None:
    assert normalise_code(" k7q-x2m ") == "K7QX2M"
    with pytest.raises(QuizError, match="not a quiz code"):
        normalise_code("HELLO")
    with pytest.raises(QuizError, match="Enter the quiz code"):
        normalise_code("")


def test_grade_answer_is_case_insensitive() -> None:
    assert grade_answer("neutrophil", "NEUTROPHIL")
    assert not grade_answer("MONOCYTE", "NEUTROPHIL")


def test_kappa_hand_computed() -> None:
    # po = 3/4, pe = .5*.25 + .5*.75 = .5  ->  kappa = (.75 - .5) / (1 - .5) = .5
    assert cohen_kappa(list("AABB"), list("ABBB")) == pytest.approx(0.5)
    assert cohen_kappa(list("AAAA"), list("AAAA")) == 1.0
    # Complete disagreement with balanced marginals: po = 0, pe = .5 -> -1
    assert cohen_kappa(list("AB"), list("BA")) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        cohen_kappa([], [])


def test_report_hand_computed() -> None:
    truths, answers, model = "AABB", "ABBB", "AABA"
    graded = [
        Answer(i, f"img{i}.jpg", t, a, t == a, seconds=float(i + 1), model_pred=m, model_conf=0.9)
        for i, (t, a, m) in enumerate(zip(truths, answers, model, strict=True))
    ]
    report = build_report(graded, ["A", "B"], n_questions=5)
    assert (report.n_questions, report.n_answered, report.n_correct) == (5, 4, 3)
    assert report.score == pytest.approx(3 / 5)  # the unanswered fifth question counts as wrong
    per_class = report.per_class.set_index("class")["accuracy"].to_dict()
    assert per_class == {"A": 0.5, "B": 1.0}
    assert report.student_confusion.loc["A", "B"] == 1
    assert report.student_confusion.loc["B", "B"] == 2
    assert report.model_confusion.loc["B", "A"] == 1
    assert report.model_accuracy == pytest.approx(3 / 4)
    # student ABBB vs model AABA: po = .5, pe = .25*.75 + .75*.25 = .375 -> kappa = .125 / .625 = .2
    assert report.kappa == pytest.approx(0.2)
    assert report.mean_seconds == pytest.approx(2.5)
    assert [m.question_index for m in report.mistakes] == [1]


def test_report_without_model_has_no_kappa() -> None:
    report = build_report([Answer(0, "a.jpg", "A", "A", True)], ["A", "B"])
    assert report.kappa is None and report.model_confusion is None and report.score == 1.0


def test_leitner_boxes_and_due_steps() -> None:
    assert leitner_box(None, correct=False) == 1
    assert leitner_box(None, correct=True) == 2
    assert leitner_box(3, correct=True) == 4
    assert leitner_box(5, correct=True) == 5
    assert leitner_box(4, correct=False) == 1
    # answered wrong as the student's 10th answer: box 1, due again at answer count 10 + 2
    assert update_card(None, False, 10) == Card(1, 10 + LEITNER_INTERVALS[0])
    assert update_card(Card(2, 7), True, 10) == Card(3, 10 + LEITNER_INTERVALS[2])
    # a wrong image comes back sooner than a right one
    assert update_card(Card(3, 7), False, 10).due_step < update_card(Card(3, 7), True, 10).due_step


def test_class_weights_hand_computed() -> None:
    history = [("A", True), ("A", True), ("B", False), ("B", False)]
    # A: .5 + 1 - 3/4 = .75; B: .5 + 1 - 1/4 = 1.25; C (unseen): .5 + 1 - 1/2 = 1.0; total 3.0
    weights = class_weights(history, ["A", "B", "C"])
    assert weights == pytest.approx({"A": 0.25, "B": 1.25 / 3, "C": 1 / 3})


def test_pick_next_prefers_due_images_then_weak_classes() -> None:
    pool = [Question(f"{c}{i}.jpg", c) for c in "AB" for i in range(5)]
    rng = np.random.default_rng(0)
    cards = {"A0.jpg": Card(3, 5), "A1.jpg": Card(1, 6), "B0.jpg": Card(1, 9)}
    # at step 6, A0 (box 3) and A1 (box 1) are due: the lower box wins
    question, reason = pick_next_question(pool, cards, 6, {"A": 0.5, "B": 0.5}, rng)
    assert question.path == "A1.jpg" and reason.startswith("review")
    # the just-shown image is not repeated
    question, _ = pick_next_question(pool, cards, 6, {"A": 0.5, "B": 0.5}, rng, avoid=["A1.jpg"])
    assert question.path == "A0.jpg"
    # nothing due: an all-B weighting gives a new B image
    question, reason = pick_next_question(pool, cards, 4, {"A": 0.0, "B": 1.0}, rng)
    assert question.label == "B" and question.path != "B0.jpg" and reason == "new"
    # weak classes are sampled more often
    draws = [pick_next_question(pool, {}, 0, {"A": 0.2, "B": 0.8}, rng)[0].label for _ in range(400)]
    assert 0.7 < draws.count("B") / 400 < 0.9


def test_sample_balanced_is_deterministic_and_balanced(pbc_mini) -> None:
    pool = quiz_pool(discover_dataset(pbc_mini).frame)
    first = sample_balanced(pool, 10, seed=3)
    assert first == sample_balanced(pool, 10, seed=3)
    assert first != sample_balanced(pool, 10, seed=4)
    counts = pd.Series([q.label for q in first]).value_counts()
    assert counts.max() - counts.min() <= 1 and len(counts) == 4
    only = sample_balanced(pool, 6, seed=0, classes=["MONOCYTE", "EOSINOPHIL"])
    assert {q.label for q in only} == {"MONOCYTE", "EOSINOPHIL"}
    with pytest.raises(QuizError):
        sample_balanced(pool, 3, seed=0, classes=["PLATELET"])


def test_challenge_questions_put_model_mistakes_first() -> None:
    predictions = pd.DataFrame(
        {
            "path": ["a", "b", "c", "d"],
            "label": ["A", "A", "B", "B"],
            "pred": ["A", "B", "B", "A"],
            "conf": [0.99, 0.6, 0.55, 0.9],
            "true_prob": [0.99, 0.4, 0.55, 0.1],
        }
    )
    assert [q.path for q in challenge_questions(predictions, 3)] == ["d", "b", "c"]


def test_pool_verdicts_come_from_an_evaluation_job(
    tiny_model_dir: Path, pbc_mini: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hemato import jobs
    from hemato.teaching.pool import pool_dataset, pool_key, pool_predictions, start_pool_predictions

    monkeypatch.setenv("HEMATO_WORKER", "external")  # run the job in this process
    dataset = discover_dataset(pbc_mini)
    assert len(pool_dataset(dataset, ["MONOCYTE", "PLATELET"])) == 20
    assert pool_predictions(tiny_model_dir, dataset) is None
    job = start_pool_predictions(tiny_model_dir, pbc_mini, dataset)
    assert job.kind == "quiz_pool" and job.key == pool_key(tiny_model_dir, dataset)
    jobs.run_job(job.id)
    assert jobs.get(job.id).state == "done", jobs.get(job.id).error
    table = pool_predictions(tiny_model_dir, dataset)
    assert len(table) == 80 and set(table.columns) == {"path", "label", "pred", "conf", "true_prob"}
    assert table["true_prob"].between(0, 1).all() and (table["conf"] >= table["true_prob"] - 1e-6).all()
    assert start_pool_predictions(tiny_model_dir, pbc_mini, dataset).id == job.id


def test_hardest_images() -> None:
    answers = pd.DataFrame(
        {
            "path": ["x", "x", "y", "y", "z"],
            "truth": ["A", "A", "B", "B", "A"],
            "answer": ["B", "B", "B", "A", "A"],
            "correct": [False, False, True, False, True],
        }
    )
    table = hardest_images(answers)
    assert table["path"].tolist() == ["x", "y", "z"]
    assert table.loc[0, "common_answer"] == "B" and table.loc[0, "accuracy"] == 0.0


def test_instructor_secret_rules() -> None:
    assert configured_secret({}, None) is None
    assert configured_secret({"HEMATO_INSTRUCTOR_SECRET": " env "}, {}) == "env"
    assert configured_secret({"HEMATO_INSTRUCTOR_SECRET": "env"}, {"instructor_secret": "file"}) == "file"
    assert check_secret("s3cret", "s3cret") and not check_secret("nope", "s3cret") and not check_secret("x", None)
    with pytest.raises(InstructorAccessError, match="disabled"):
        require_instructor("anything", None)
    with pytest.raises(InstructorAccessError, match="Wrong"):
        require_instructor("wrong", "s3cret")
    require_instructor("s3cret", "s3cret")


def test_seconds_left() -> None:
    from hemato.teaching.quiz import seconds_left

    assert seconds_left(100.0, None, 500.0) is None
    assert seconds_left(100.0, 60, 130.0) == 30.0
    assert seconds_left(100.0, 60, 400.0) == 0.0


def test_resolve_images(pbc_mini) -> None:
    from hemato.teaching.quiz import resolve_images

    ds = discover_dataset(pbc_mini)
    first = ds.frame["path"].iloc[0]
    relative = str(Path(ds.frame["path"].iloc[1]).relative_to(ds.root))
    name = Path(ds.frame["path"].iloc[2]).name
    found, unknown = resolve_images(ds.frame, ds.root, [first, relative, f"  {name} ", "", first, "nope.jpg"])
    assert [q.path for q in found] == ds.frame["path"].iloc[:3].tolist()
    assert found[0].label == ds.frame["label"].iloc[0]
    assert unknown == ["nope.jpg"]


def test_class_vs_model() -> None:
    from hemato.teaching.quiz import class_vs_model

    answers = pd.DataFrame(
        {"path": ["x", "x", "y", "z"], "truth": ["A", "A", "A", "B"], "correct": [True, False, False, True]}
    )
    table = class_vs_model(answers, {"x": "A", "y": "B", "z": "B"}).set_index("class")
    assert table.loc["A", "class_accuracy"] == pytest.approx(1 / 3)
    assert table.loc["A", "model_accuracy"] == pytest.approx(0.5)
    assert table.loc["B", "model_accuracy"] == 1.0 and table.loc["A", "images"] == 2


def test_history_summary() -> None:
    from hemato.teaching.quiz import history_summary

    assert history_summary([], {}, 0).startswith("No answers yet")
    history = [("A", True), ("B", False), ("B", True), ("A", True)]
    cards = {"x": Card(1, 3), "y": Card(2, 9)}
    assert history_summary(history, cards, 4) == (
        "4 answers so far, 75% right. Weakest class: B (50%), practised more often. 1 image(s) due for review."
    )
