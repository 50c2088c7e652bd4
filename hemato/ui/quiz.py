"""Streamlit pieces for the quiz, instructor and atlas pages: cached loaders, model verdicts, reports.

The quiz's logic (modes, question picking, answering, what to show when) is
:class:`hemato.teaching.session.QuizSession`; this module draws it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from hemato.config import ENV_INSTRUCTOR_SECRET, get_settings
from hemato.data.datasets import Dataset
from hemato.data.imaging import ImageError, load_array
from hemato.jobs import JobError
from hemato.teaching.atlas import Atlas, AtlasEntry, load_atlas
from hemato.teaching.pool import pool_dataset, pool_predictions, start_pool_predictions
from hemato.teaching.quiz import (
    Answer,
    InstructorAccessError,
    QuizError,
    QuizReport,
    check_secret,
    class_vs_model,
    configured_secret,
    confusion,
    hardest_images,
    quiz_pool,
    resolve_images,
    sample_balanced,
    seconds_left,
)
from hemato.teaching.session import QuizSession
from hemato.teaching.store import AlreadyAnsweredError, InstructorView, QuizStore, Student
from hemato.ui.common import dataset_or_error, load_model_cached, model_picker
from hemato.ui.jobs import job_status
from hemato.vision.explain import explain, overlay
from hemato.vision.models import ModelLoadError, model_key, read_card
from hemato.vision.predict import Predictor

THUMB = 160
SESSION_KEY = "quiz_session"


# ---------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner=False, max_entries=4)
def _store(db_url: str) -> QuizStore:
    return QuizStore(db_url)


def quiz_store() -> QuizStore:
    """The quiz store on the settings' database (schema migrated once per process)."""
    return _store(get_settings().db_url)


def quiz_dataset() -> Dataset | None:
    """The configured dataset, or None after showing why there is none."""
    data_dir = get_settings().data_dir
    dataset = dataset_or_error(
        data_dir, "No dataset found: put one in data/ or set HEMATO_DATA_DIR to a dataset folder."
    )
    if dataset is None:
        return None
    if len(dataset.classes) < 2:
        st.error(f"The dataset at {data_dir} needs images of at least two classes.")
        return None
    return dataset


@st.cache_resource(show_spinner=False, max_entries=1)
def atlas() -> Atlas:
    """The atlas content (read once per process)."""
    return load_atlas()


@st.cache_data(max_entries=512, show_spinner=False)
def image_array(path: str, size: int | None = None) -> np.ndarray | None:
    """An image as uint8 RGB (optionally square-resized), or None when it cannot be read."""
    try:
        return load_array(path, size)
    except ImageError:
        return None


def show_image(path: str, width: int | None = None, caption: str | None = None) -> None:
    """Show one dataset image, or a clear message when it cannot be read."""
    array = image_array(path)
    if array is None:
        st.error(f"{Path(path).name} cannot be read.")
    elif width:
        st.image(array, width=width, caption=caption)
    else:
        st.image(array, caption=caption, width="stretch")


# ---------------------------------------------------------------- models


def pick_model(key: str) -> tuple[Path, Any, Any] | None:
    """Sidebar model picker (default model first) → (folder, model, card), or None with a message."""
    model_dir = model_picker(key)
    if model_dir is None:
        return None
    try:
        model, card = load_model_cached(model_dir)
    except ModelLoadError as exc:
        st.error(str(exc))
        return None
    return model_dir, model, card


@st.cache_resource(show_spinner=False, max_entries=4)
def _predictor(model_dir: str, key: str) -> Any:
    model, card = load_model_cached(Path(model_dir))
    return Predictor(model, card.input_size)


@st.cache_data(max_entries=2048, show_spinner=False)
def _verdict(model_dir: str, key: str, path: str) -> tuple[str, float] | None:
    array = image_array(path)
    if array is None:
        return None
    probs = _predictor(model_dir, key).predict_one(array)
    classes = read_card(Path(model_dir)).classes
    best = int(np.argmax(probs))
    return classes[best], float(probs[best])


def model_verdict(model_dir: Path | None, path: str) -> tuple[str, float] | None:
    """The model's predicted class and confidence for one image (cached per model version), or None without one."""
    if model_dir is None:
        return None
    return _verdict(str(model_dir), model_key(model_dir), path)


@st.cache_data(max_entries=256, show_spinner=False)
def _gradcam(model_dir: str, key: str, path: str, target: int | None) -> np.ndarray | None:
    array = image_array(path)
    if array is None:
        return None
    model, _ = load_model_cached(Path(model_dir))
    return overlay(array, explain(model, array, method="gradcam", target_class=target), alpha=0.45)


def gradcam_overlay(model_dir: Path, path: str, target_class: str | None = None) -> np.ndarray | None:
    """Grad-CAM overlay (uint8 RGB) of the model's predicted class, or of ``target_class`` when given."""
    classes = read_card(model_dir).classes
    target = classes.index(target_class) if target_class in classes else None
    return _gradcam(str(model_dir), model_key(model_dir), path, target)


def prepare_feedback(model_dir: Path | None, path: str, with_gradcam: bool) -> None:
    """Compute (into the caches) what the feedback on ``path`` will show, while the student looks at the image.

    Called at the very end of the page, after the question is drawn: the browser already shows it, and the
    answer's feedback then needs no model call (the first one of a model costs seconds of graph tracing).
    """
    if model_dir is None:
        return
    try:
        model_verdict(model_dir, path)
        if with_gradcam:
            gradcam_overlay(model_dir, path)
    except Exception:  # noqa: BLE001 - best effort: the feedback itself reports a broken model
        return


def show_model_verdict(model_dir: Path | None, path: str, truth: str | None = None, width: int | None = 300) -> None:
    """The model's prediction with confidence and its Grad-CAM overlay ("no model yet" without one)."""
    if model_dir is None:
        st.info("Model verdict: no model yet. Train one (Train page) to compare yourself with it.")
        return
    try:
        with st.spinner("Asking the model…"):
            verdict = model_verdict(model_dir, path)
            heat = gradcam_overlay(model_dir, path)
    except Exception as exc:  # noqa: BLE001 - a broken model must not break the quiz
        st.warning(f"The model could not judge this image ({type(exc).__name__}: {exc}).")
        return
    if verdict is None:
        st.warning("The model could not read this image.")
        return
    pred, conf = verdict
    mark = "" if truth is None else (" ✅" if pred == truth else " ❌")
    st.markdown(f"**Model:** {pred.title()} ({conf:.0%} confident){mark}")
    if heat is not None:
        st.image(heat, width=width or "stretch", caption="Grad-CAM: where the model looked (red = most important)")


# ---------------------------------------------------------------- pool predictions (a job)


def pool_predictions_view(model_info: tuple[Path, Any, Any], dataset: Dataset) -> pd.DataFrame | None:
    """The model's verdicts on the quiz pool when computed; otherwise start (or follow) their job and say so."""
    model_dir, _, card = model_info
    if len(pool_dataset(dataset, card.classes)) == 0:
        st.warning(f"None of this dataset's classes are among the model's classes ({', '.join(card.classes)}).")
        return None
    table = pool_predictions(model_dir, dataset)
    if table is not None:
        return table
    try:
        job = start_pool_predictions(model_dir, get_settings().data_dir or dataset.root, dataset)
    except (JobError, ValueError) as exc:
        st.error(f"The model could not go through the images: {exc}")
        return None
    job_status(job.id, "quiz_pool")
    return None


# ---------------------------------------------------------------- instructor secret


def instructor_secret() -> str | None:
    """The configured instructor secret (``.streamlit/secrets.toml`` or the environment), if any."""
    try:
        secrets_map = dict(st.secrets)
    except Exception:  # noqa: BLE001 - no or unreadable secrets.toml just means "not configured there"
        secrets_map = {}
    return configured_secret(os.environ, secrets_map)


def how_to_enable_instructor() -> str:
    """Markdown telling a lecturer how to switch instructor mode on."""
    return (
        "Instructor mode is **off** because no instructor secret is configured. To enable it, either\n\n"
        '* add `instructor_secret = "choose-a-long-passphrase"` to `.streamlit/secrets.toml`, or\n'
        f"* set the environment variable `{ENV_INSTRUCTOR_SECRET}` before starting the app,\n\n"
        "then restart the app and enter that secret here."
    )


# ---------------------------------------------------------------- atlas rendering


def render_atlas_entry(entry: AtlasEntry | None, label: str) -> None:
    """One class's teaching content, or a graceful note when the atlas has none."""
    if entry is None:
        st.info(f"No atlas entry yet for **{label}**. Add `hemato/atlas/{label}.yaml` to write one.")
        return
    st.markdown(f"**Key cue:** {entry.key_cue}")
    st.markdown(f"**What it does.** {entry.function}")
    st.markdown("**How to recognise it**")
    st.markdown("\n".join(f"* **{k.capitalize()}:** {v}" for k, v in entry.recognise.items()))
    share = f"**Normal share in adult blood:** {entry.normal_share}"
    if entry.normal_absolute:
        share += f" ({entry.normal_absolute})"
    st.markdown(share + (f". {entry.normal_note}" if entry.normal_note else ""))
    up, down = st.columns(2)
    with up:
        st.markdown("**Raised in**\n" + "\n".join(f"* {x}" for x in entry.raised_in))
    with down:
        st.markdown("**Lowered in**\n" + "\n".join(f"* {x}" for x in entry.lowered_in))
    if entry.confused_with:
        st.markdown("**Often confused with**")
        st.markdown("\n".join(f"* **{c['class'].title()}:** {c['how']}" for c in entry.confused_with))


def render_gallery(paths: list[str], captions: list[str] | None = None, per_row: int = 6) -> None:
    """A grid of thumbnails."""
    if not paths:
        st.caption("No images of this class in the dataset.")
        return
    captions = captions or [Path(p).name for p in paths]
    for start in range(0, len(paths), per_row):
        cols = st.columns(per_row)
        for col, path, caption in zip(
            cols, paths[start : start + per_row], captions[start : start + per_row], strict=False
        ):
            with col:
                array = image_array(path, THUMB)
                if array is None:
                    st.caption(f"{Path(path).name}: unreadable")
                else:
                    st.image(array, caption=caption, width="stretch")


# ---------------------------------------------------------------- reports


def confusion_figure(table: pd.DataFrame, title: str) -> Any:
    """A plotly heatmap of a confusion table (rows true, columns answered)."""
    import plotly.express as px

    short = [str(c)[:4] for c in table.columns]
    fig = px.imshow(
        table.values,
        x=short,
        y=[str(i) for i in table.index],
        text_auto=True,
        color_continuous_scale="Reds",
        labels={"x": table.columns.name or "answered", "y": "true class", "color": "images"},
        title=title,
        aspect="auto",
    )
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10}, coloraxis_showscale=False)
    return fig


def render_report(report: QuizReport, key: str) -> None:
    """Score, per-class accuracy, the student's and the model's confusion matrices, kappa and timings."""
    cols = st.columns(4)
    cols[0].metric("Score", f"{report.n_correct} / {report.n_questions} ({report.score:.0%})")
    cols[1].metric(
        "Model on the same images", "no model yet" if report.model_accuracy is None else f"{report.model_accuracy:.0%}"
    )
    cols[2].metric("Agreement with model (κ)", "—" if report.kappa is None else f"{report.kappa:.2f}")
    cols[3].metric("Time per question", "—" if report.mean_seconds is None else f"{report.mean_seconds:.1f} s")
    if report.n_answered < report.n_questions:
        st.caption(f"{report.n_questions - report.n_answered} question(s) unanswered count as wrong.")
    if report.kappa is not None:
        st.caption(
            "κ (Cohen's kappa) measures how often you and the model give the same answer beyond chance: "
            "1 = always agree, 0 = chance level, below 0 = systematic disagreement."
        )
    st.markdown("**Accuracy per class**")
    table = report.per_class.assign(accuracy=lambda t: (t["accuracy"] * 100).round(0).astype(int).astype(str) + " %")
    st.dataframe(table, hide_index=True, key=f"{key}_per_class")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(confusion_figure(report.student_confusion, "You"), key=f"{key}_cm_student")
    with right:
        if report.model_confusion is None:
            st.info("The model's confusion matrix appears here once a model exists.")
        else:
            st.plotly_chart(confusion_figure(report.model_confusion, "The model (same images)"), key=f"{key}_cm_model")
    if report.seconds:
        st.markdown("**Seconds per question**")
        st.bar_chart(pd.DataFrame({"seconds": report.seconds}, index=range(1, len(report.seconds) + 1)), height=180)


def render_answer_feedback(answer: Answer, model_dir: Path | None, key_cue: str, show_image_too: bool = False) -> None:
    """Right/wrong, the correct class and its key cue, and the model's verdict with Grad-CAM."""
    if answer.correct:
        st.success(f"Correct: **{answer.truth.title()}**.")
    else:
        st.error(f"Not quite: you said **{answer.answer.title()}**, it is **{answer.truth.title()}**.")
    st.markdown(f"**Key cue for {answer.truth.lower()}s:** {key_cue}")
    cols = st.columns(2) if show_image_too else [st.container()]
    if show_image_too:
        with cols[0]:
            show_image(answer.path, width=300, caption="The image")
    with cols[-1]:
        show_model_verdict(model_dir, answer.path, truth=answer.truth)


# ---------------------------------------------------------------- the student's quiz flow

MODE_LABELS = {
    "practice": "Practice (endless, feedback after each answer, hints)",
    "exam": "Exam (N questions, optional time limit, results at the end)",
    "challenge": "Challenge the model (images it gets wrong or is least sure of)",
    "code": "Quiz from my instructor (enter a code)",
}


def signed_in_student() -> dict[str, Any] | None:
    """The signed-in student (``{"id", "name"}``) of this browser session, if any."""
    return st.session_state.get("quiz_student")


def quiz_session(dataset: Dataset) -> QuizSession | None:
    """The signed-in student's quiz session (its per-tab state lives in this browser session), or None."""
    student = signed_in_student()
    if student is None:
        return None
    data = st.session_state.setdefault(SESSION_KEY, {})
    return QuizSession(
        quiz_store(), Student(student["id"], student["name"]), quiz_pool(dataset.frame), dataset.classes, data
    )


def sign_in_form() -> None:
    """Ask for a display name (no password), validate it and remember the student in the session."""
    with st.form("quiz_sign_in"):
        name = st.text_input(
            "Your display name", max_chars=60, key="quiz_name", help="1–40 characters; no password needed."
        )
        go = st.form_submit_button("Continue", type="primary", key="quiz_sign_in_go")
    if go:
        try:
            student = quiz_store().get_or_create_student(name)
        except QuizError as exc:
            st.error(str(exc))
            return
        st.session_state["quiz_student"] = {"id": student.id, "name": student.name}
        st.rerun()


def sign_out() -> None:
    """Forget the student and any running quiz in this session (stored answers stay)."""
    for key in [k for k in st.session_state if str(k).startswith("quiz_")]:
        del st.session_state[key]


def start_quiz(
    session: QuizSession,
    mode: str,
    dataset: Dataset,
    model_info: tuple[Path, Any, Any] | None,
    n_questions: int = 10,
    time_limit_min: float = 0.0,
    code: str = "",
) -> bool:
    """Start the chosen mode; show a clear message and return False when it cannot start."""
    predictions = None
    if mode == "challenge":
        if model_info is None:
            st.warning("Challenge mode needs a trained model: no model yet.")
            return False
        predictions = pool_predictions_view(model_info, dataset)
        if predictions is None:
            return False
    try:
        session.start(
            mode,
            n_questions,
            time_limit_min,
            code,
            model_name=str(model_info[0]) if model_info else None,
            predictions=predictions,
        )
    except QuizError as exc:
        st.error(str(exc))
        return False
    return True


def submit_answer(session: QuizSession, choice: str, model_dir: Path | None) -> Answer | None:
    """Store one answer at once (with the model's verdict when there is a model); messages for bad submissions."""
    now = time.time()
    state = session.state(now)
    verdict = None
    if state.question is not None:
        try:
            verdict = model_verdict(model_dir, state.question.path)
        except Exception:  # noqa: BLE001 - the answer is stored even if the model fails
            verdict = None
    try:
        return session.submit(choice, now, verdict)
    except AlreadyAnsweredError as exc:
        st.warning(str(exc))
    except QuizError as exc:
        st.error(str(exc))
    return None


def question_form(attempt_id: int, index: int, classes: list[str]) -> str | None:
    """The answer form for one question; returns the chosen class when submitted with a choice."""
    with st.form(f"quiz_form_{attempt_id}_{index}"):
        choice = st.radio(
            "Which white cell is this?",
            classes,
            index=None,
            key=f"quiz_choice_{attempt_id}_{index}",
            format_func=lambda c: c.title(),
        )
        submitted = st.form_submit_button("Submit answer", type="primary", key=f"quiz_submit_{attempt_id}_{index}")
    if submitted and choice is None:
        st.warning("Pick a class before submitting.")
        return None
    return choice if submitted else None


@st.fragment(run_every=1)
def countdown(started: float, limit_s: float) -> None:
    """A live countdown for timed exams; reruns the page when time is up."""
    left = seconds_left(started, limit_s, time.time()) or 0.0
    if left <= 0:
        st.rerun(scope="app")
    st.progress(left / limit_s, text=f"⏱ {int(left // 60)}:{int(left % 60):02d} left")


def render_mistakes(answers: list[Answer]) -> None:
    """Thumbnails of the questions answered wrongly, with the right class."""
    mistakes = [a for a in answers if not a.correct]
    if not mistakes:
        st.success("No mistakes. 🎉")
        return
    render_gallery(
        [a.path for a in mistakes],
        [f"Q{a.question_index + 1}: you {a.answer.title()}, is {a.truth.title()}" for a in mistakes],
    )


# ---------------------------------------------------------------- instructor mode


def instructor_gate() -> Any:
    """The instructor's view of class data, or None after explaining how to enable or unlock it.

    Nothing class-wide is shown before the configured secret has been entered in this session.
    """
    configured = instructor_secret()
    if configured is None:
        st.info(how_to_enable_instructor())
        return None
    given = st.session_state.get("instructor_given")
    if given is not None and check_secret(given, configured):
        return InstructorView(quiz_store(), given, configured)
    with st.form("instructor_unlock"):
        typed = st.text_input("Instructor secret", type="password", key="instructor_secret_input")
        go = st.form_submit_button("Unlock", type="primary", key="instructor_unlock_go")
    if go:
        try:
            InstructorView(quiz_store(), typed, configured)
        except InstructorAccessError as exc:
            st.error(f"{exc} Students never see instructor data.")
            return None
        st.session_state["instructor_given"] = typed
        st.rerun()  # redraw without the unlock form so the instructor layout keeps stable positions
    return None


def render_create_quiz_set(view: Any, dataset: Dataset) -> None:
    """Form: a quiz set from classes + size + seed, or from a fixed list of images; shows the new code."""
    kind = st.radio(
        "Images",
        ["sample", "fixed"],
        horizontal=True,
        key="instr_kind",
        format_func={"sample": "Random sample by class", "fixed": "Fixed list of images"}.get,
    )
    with st.form("instr_create"):
        title = st.text_input("Title", value="Blood film quiz", max_chars=80, key="instr_title")
        if kind == "sample":
            classes = st.multiselect("Classes", dataset.classes, default=dataset.classes, key="instr_classes")
            size = st.number_input("Number of images", 1, 200, 10, key="instr_size")
            seed = st.number_input("Seed (same seed, same images)", 0, 10**6, 42, key="instr_seed")
            names = ""
        else:
            names = st.text_area(
                "One image per line: file name, path relative to the dataset folder, or absolute path",
                key="instr_names",
                height=160,
            )
        create = st.form_submit_button("Create quiz set", type="primary", key="instr_create_go")
    if not create:
        return
    try:
        if kind == "sample":
            items = sample_balanced(quiz_pool(dataset.frame), int(size), int(seed), classes or None)
            spec = {"kind": "sample", "classes": classes, "size": int(size), "seed": int(seed)}
        else:
            items, unknown = resolve_images(dataset.frame, dataset.root, names.splitlines())
            if unknown:
                st.error(f"Not found in the dataset: {', '.join(unknown[:10])}{' …' if len(unknown) > 10 else ''}")
                return
            spec = {"kind": "fixed"}
        spec["dataset"] = str(dataset.root)
        code = view.store.create_quiz_set(title, items, spec)
    except QuizError as exc:
        st.error(str(exc))
        return
    st.success(f"Quiz set created with {len(items)} images. Students enter this code on the Quiz page:")
    st.markdown(
        f"<div style='font-size:3rem;font-weight:700;letter-spacing:.3rem'>{code}</div>", unsafe_allow_html=True
    )


def quiz_set_picker(view: Any, key: str) -> Any:
    """Select box of quiz sets (newest first); None with a note when there are none."""
    sets = view.store.list_quiz_sets()
    if not sets:
        st.info("No quiz set yet: create one in the first tab.")
        return None
    return st.selectbox(
        "Quiz set", sets, key=key, format_func=lambda s: f"{s.code} · {s.title} ({len(s.items)} images)"
    )


def render_class_results(view: Any, quiz_set: Any, dataset: Dataset, model_dir: Path | None) -> None:
    """Per-student scores, class confusion matrix, hardest images, class vs model and CSV export (live)."""
    answers = view.answers(quiz_set.code)
    st.caption(f"{answers['student'].nunique()} student(s), {len(answers)} answer(s) · refreshes every 5 s")
    if answers.empty:
        st.info(f"No answers yet. Students enter code **{quiz_set.code}** on the Quiz page.")
        return
    st.markdown("**Scores per student**")
    scores = view.student_scores(quiz_set.code).assign(
        score=lambda t: (t["score"] * 100).round(0), mean_seconds=lambda t: t["mean_seconds"].round(1)
    )
    st.dataframe(scores.rename(columns={"score": "score %", "mean_seconds": "s / question"}), hide_index=True)
    labels = sorted(set(dataset.classes) | set(answers["truth"]) | set(answers["answer"]))
    left, right = st.columns(2)
    with left:
        table = confusion(answers["truth"].tolist(), answers["answer"].tolist(), labels)
        st.plotly_chart(confusion_figure(table, "The class (all answers)"), key="instr_cm")
    with right:
        st.markdown("**Class vs model**")
        preds = {}
        if model_dir is None:
            st.info("No model yet: the comparison appears once a model is trained.")
        else:
            for item in quiz_set.items:
                verdict = model_verdict(model_dir, item.path)
                if verdict:
                    preds[item.path] = verdict[0]
            comparison = class_vs_model(answers, preds)
            for col in ("class_accuracy", "model_accuracy"):
                comparison[col] = (comparison[col] * 100).round(0)
            st.dataframe(
                comparison.rename(columns={"class_accuracy": "class %", "model_accuracy": "model %"}), hide_index=True
            )
    st.markdown("**Hardest images** (lowest share of correct answers)")
    hard = hardest_images(answers, top=6)
    render_gallery(
        hard["path"].tolist(),
        [
            f"{r.truth.title()}: {r.accuracy:.0%} right; often '{r.common_answer.title()}'"
            + (f"; model {preds[r.path].title()}" if r.path in preds else "")
            for r in hard.itertuples()
        ],
    )
    st.download_button(
        "Download answers (CSV)",
        view.export_csv(quiz_set.code),
        file_name=f"quiz_{quiz_set.code}_answers.csv",
        mime="text/csv",
        key="instr_csv",
    )


def render_presentation(quiz_set: Any, model_dir: Path | None) -> None:
    """Lecture mode: one large image at a time, answer hidden until revealed, model verdict on demand."""
    n = len(quiz_set.items)
    state_key = f"instr_pres_{quiz_set.code}"
    state = st.session_state.setdefault(state_key, {"index": 0, "reveal": False, "model": False})
    prev, pos, nxt = st.columns([1, 3, 1])
    if prev.button("◀ Previous", key="instr_prev", disabled=state["index"] == 0):
        state.update(index=state["index"] - 1, reveal=False, model=False)
    if nxt.button("Next ▶", key="instr_next", disabled=state["index"] >= n - 1):
        state.update(index=state["index"] + 1, reveal=False, model=False)
    pos.markdown(
        f"<div style='text-align:center;font-size:1.4rem'>Image {state['index'] + 1} of {n}</div>",
        unsafe_allow_html=True,
    )
    item = quiz_set.items[state["index"]]
    image_col, side = st.columns([3, 2])
    with image_col:
        show_image(item.path, width=640)
    with side:
        if st.button("Reveal answer", key="instr_reveal", type="primary"):
            state["reveal"] = True
        if state["reveal"]:
            st.markdown(
                f"<div style='font-size:2.2rem;font-weight:700'>{item.label.title()}</div>", unsafe_allow_html=True
            )
            st.markdown(atlas().key_cue(item.label))
        else:
            st.caption("The answer is hidden until you reveal it.")
        if st.button("Show the model's verdict and Grad-CAM", key="instr_model"):
            state["model"] = True
        if state["model"]:
            show_model_verdict(model_dir, item.path, truth=item.label if state["reveal"] else None, width=None)
