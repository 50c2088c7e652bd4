"""Quiz: students name white cells in practice, exam or challenge-the-model mode; every answer is stored at once."""

import time

import streamlit as st

from hemato.teaching.quiz import build_report, history_summary, seconds_left
from hemato.ui import quiz as ui
from hemato.ui.common import setup_page

setup_page("Quiz", icon="🧪")
dataset = ui.quiz_dataset()
if dataset is None:
    st.stop()
with st.sidebar:
    model_info = ui.pick_model("quiz_model_picker")
atlas = ui.atlas()
store = ui.quiz_store()

student = ui.signed_in_student()
if student is None:
    st.markdown("Practise naming white blood cells on real images, then compare yourself with the model.")
    ui.sign_in_form()
    st.stop()

head, out = st.columns([5, 1])
head.markdown(f"Signed in as **{student['name']}**")
if out.button("Sign out", key="quiz_sign_out"):
    ui.sign_out()
    st.rerun()

attempt_id = st.session_state.get("quiz_attempt")
if attempt_id is None:
    for unfinished, answered in store.open_attempts(student["id"])[:1]:
        label = f"Resume your unfinished {unfinished.mode} ({answered} of {unfinished.n_questions} answered)"
        if st.button(label, key=f"quiz_resume_{unfinished.id}", type="primary"):
            st.session_state["quiz_attempt"] = unfinished.id
            st.rerun()
    st.caption(
        history_summary(
            store.class_history(student["id"]), store.cards(student["id"]), store.student_step(student["id"])
        )
    )
    st.subheader("Choose a mode")
    mode = st.radio("Mode", list(ui.MODE_LABELS), format_func=ui.MODE_LABELS.get, key="quiz_mode_choice")
    n_questions, minutes, code = 10, 0.0, ""
    if mode in ("exam", "challenge"):
        n_questions = st.number_input("Questions", 3, 50, 10, key="quiz_n_questions")
    if mode == "exam":
        minutes = st.number_input("Time limit in minutes (0 = none)", 0.0, 120.0, 0.0, 1.0, key="quiz_minutes")
    if mode == "code":
        code = st.text_input("Quiz code", max_chars=12, key="quiz_code_input", placeholder="e.g. K7QX2M")
    if model_info is None:
        st.caption("No model yet: the quiz works; the model's verdicts appear once one is trained.")
    elif mode == "challenge":
        pool = ui.pool_predictions(model_info, dataset)
        if pool is not None:
            wrong = int((pool["pred"] != pool["label"]).sum())
            st.caption(f"The model gets {wrong} of {len(pool)} quiz images wrong; those come first.")
    if st.button("Start", type="primary", key="quiz_start") and ui.start_quiz(
        mode, dataset, model_info, n_questions, minutes, code
    ):
        st.rerun()
    st.stop()

attempt = store.get_attempt(attempt_id)
model_dir = model_info[0] if model_info else None
answers = store.attempt_answers(attempt.id)
index = len(answers)
fixed = attempt.questions is not None
feedback_now = attempt.mode in ("practice", "challenge")
classes = sorted(set(dataset.classes) | {q.label for q in attempt.questions or []})

left = seconds_left(attempt.started, attempt.time_limit_s, time.time())
finished = attempt.finished is not None or (fixed and index >= len(attempt.questions)) or left == 0
pending_feedback = feedback_now and st.session_state.get("quiz_feedback") == index - 1 and index > 0

if finished and not pending_feedback:
    store.finish_attempt(attempt.id)
    st.subheader("Your results")
    if left == 0 and index < len(attempt.questions or []):
        st.warning("Time is up.")
    report = build_report(answers, dataset.classes, attempt.n_questions if attempt.mode == "exam" else None)
    ui.render_report(report, key=f"quiz_report_{attempt.id}")
    st.subheader("Mistakes")
    ui.render_mistakes(answers)
    if answers:
        st.subheader("Review question by question")
        pick = st.selectbox(
            "Question",
            range(len(answers)),
            format_func=lambda i: f"Q{i + 1}: {'✅' if answers[i].correct else '❌'} {answers[i].truth.title()}",
            key=f"quiz_review_{attempt.id}",
        )
        ui.render_answer_feedback(answers[pick], model_dir, atlas.key_cue(answers[pick].truth), show_image_too=True)
    if st.button("New quiz", type="primary", key="quiz_new"):
        st.session_state.pop("quiz_attempt", None)
        st.rerun()
    st.stop()

title = {"practice": "Practice", "exam": "Exam", "challenge": "Challenge the model"}.get(attempt.mode, attempt.mode)
if attempt.quiz_code:
    title += f" · quiz {attempt.quiz_code}"
st.subheader(title)
if attempt.time_limit_s and left is not None:
    ui.countdown(attempt.started, attempt.time_limit_s)

if pending_feedback:
    last = answers[-1]
    image_col, info_col = st.columns([1, 1])
    with image_col:
        ui.show_image(last.path, width=380)
    with info_col:
        ui.render_answer_feedback(last, model_dir, atlas.key_cue(last.truth))
    next_col, stop_col = st.columns(2)
    if next_col.button("Next image", type="primary", key=f"quiz_next_{attempt.id}_{index}"):
        st.session_state.pop("quiz_feedback", None)
        st.rerun()
    if stop_col.button("Finish and see my report", key=f"quiz_finish_{attempt.id}_{index}"):
        st.session_state.pop("quiz_feedback", None)
        store.finish_attempt(attempt.id)
        st.rerun()
    st.stop()

if fixed:
    question = attempt.questions[index]
    st.caption(f"Question {index + 1} of {len(attempt.questions)}")
else:
    question = ui.next_practice_question(attempt.id, index, dataset, student["id"])
    reason = st.session_state.get("quiz_current", {}).get("reason", "")
    st.caption(f"Question {index + 1} · {reason}")
ui.mark_shown(attempt.id, index)

image_col, form_col = st.columns([1, 1])
with image_col:
    ui.show_image(question.path, width=380)
with form_col:
    choice = ui.question_form(attempt.id, index, classes)
    hint_key = f"quiz_hint_shown_{attempt.id}_{index}"
    if attempt.mode == "practice" and st.button("Hint", key=f"quiz_hint_{attempt.id}_{index}"):
        st.session_state[hint_key] = True
    if st.session_state.get(hint_key):
        st.info(f"Hint: {atlas.hint(question.label)}")
    if not fixed and st.button("Finish and see my report", key=f"quiz_finish_open_{attempt.id}_{index}"):
        store.finish_attempt(attempt.id)
        st.rerun()
if choice is not None:
    answer = ui.submit_answer(attempt.id, index, question, choice, model_dir)
    if answer is not None:
        if feedback_now:
            st.session_state["quiz_feedback"] = index
        st.rerun()
