"""Quiz: students name white cells in practice, exam or challenge-the-model mode; every answer is stored at once."""

import time

import streamlit as st

from hemato.teaching.session import Phase
from hemato.ui import quiz as ui
from hemato.ui.common import setup_page

setup_page("Quiz", icon="🧪")
dataset = ui.quiz_dataset()
if dataset is None:
    st.stop()
with st.sidebar:
    model_info = ui.pick_model("quiz_model_picker")
model_dir = model_info[0] if model_info else None
atlas = ui.atlas()

session = ui.quiz_session(dataset)
if session is None:
    st.markdown("Practise naming white blood cells on real images, then compare yourself with the model.")
    ui.sign_in_form()
    st.stop()

head, out = st.columns([5, 1])
head.markdown(f"Signed in as **{session.student.name}**")
if out.button("Sign out", key="quiz_sign_out"):
    ui.sign_out()
    st.rerun()

state = session.state(time.time())

if state.phase == Phase.CHOOSING:
    for unfinished, answered in session.unfinished():
        label = f"Resume your unfinished {unfinished.mode} ({answered} of {unfinished.n_questions} answered)"
        if st.button(label, key=f"quiz_resume_{unfinished.id}", type="primary"):
            session.resume(unfinished.id)
            st.rerun()
    st.caption(session.history())
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
        pool = ui.pool_predictions_view(model_info, dataset)
        if pool is not None:
            wrong = int((pool["pred"] != pool["label"]).sum())
            st.caption(f"The model gets {wrong} of {len(pool)} quiz images wrong; those come first.")
    if st.button("Start", type="primary", key="quiz_start") and ui.start_quiz(
        session, mode, dataset, model_info, n_questions, minutes, code
    ):
        st.rerun()
    st.stop()

attempt = state.attempt
if state.phase in (Phase.FINISHED, Phase.TIME_UP):
    st.subheader("Your results")
    if state.phase == Phase.TIME_UP:
        st.warning("Time is up.")
    ui.render_report(session.report(state), key=f"quiz_report_{attempt.id}")
    st.subheader("Mistakes")
    ui.render_mistakes(state.answers)
    if state.answers:
        st.subheader("Review question by question")
        answers = state.answers
        pick = st.selectbox(
            "Question",
            range(len(answers)),
            format_func=lambda i: f"Q{i + 1}: {'✅' if answers[i].correct else '❌'} {answers[i].truth.title()}",
            key=f"quiz_review_{attempt.id}",
        )
        ui.render_answer_feedback(answers[pick], model_dir, atlas.key_cue(answers[pick].truth), show_image_too=True)
    if st.button("New quiz", type="primary", key="quiz_new"):
        session.leave()
        st.rerun()
    st.stop()

st.subheader(state.title)
if attempt.time_limit_s and state.seconds_left is not None:
    ui.countdown(attempt.started, attempt.time_limit_s)

if state.phase == Phase.FEEDBACK:
    last = state.answers[-1]
    image_col, info_col = st.columns([1, 1])
    with image_col:
        ui.show_image(last.path, width=380)
    with info_col:
        ui.render_answer_feedback(last, model_dir, atlas.key_cue(last.truth))
    next_col, stop_col = st.columns(2)
    if next_col.button("Next image", type="primary", key=f"quiz_next_{attempt.id}_{state.index}"):
        session.next()
        st.rerun()
    if stop_col.button("Finish and see my report", key=f"quiz_finish_{attempt.id}_{state.index}"):
        session.finish()
        st.rerun()
    st.stop()

question = state.question
st.caption(state.progress)
session.shown(state.index, time.time())
image_col, form_col = st.columns([1, 1])
with image_col:
    ui.show_image(question.path, width=380)
with form_col:
    choice = ui.question_form(attempt.id, state.index, state.classes)
    hint_key = f"quiz_hint_shown_{attempt.id}_{state.index}"
    if attempt.mode == "practice" and st.button("Hint", key=f"quiz_hint_{attempt.id}_{state.index}"):
        st.session_state[hint_key] = True
    if st.session_state.get(hint_key):
        st.info(f"Hint: {atlas.hint(question.label)}")
    if attempt.questions is None and st.button(
        "Finish and see my report", key=f"quiz_finish_open_{attempt.id}_{state.index}"
    ):
        session.finish()
        st.rerun()
if choice is not None and ui.submit_answer(session, choice, model_dir) is not None:
    st.rerun()
ui.prepare_feedback(model_dir, question.path, with_gradcam=attempt.mode in ("practice", "challenge"))
