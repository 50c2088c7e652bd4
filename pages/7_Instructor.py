"""Instructor mode: quiz sets with codes, live class results, CSV export and a presentation mode for lectures."""

import streamlit as st

from hemato.ui import quiz as ui
from hemato.ui.common import setup_page

setup_page("Instructor", icon="🎓")
view = ui.instructor_gate()
if view is None:
    st.stop()
dataset = ui.quiz_dataset()
if dataset is None:
    st.stop()
with st.sidebar:
    model_info = ui.pick_model("instructor_model_picker")
    if st.button("Lock instructor mode", key="instr_lock"):
        st.session_state.pop("instructor_given", None)
        st.rerun()
model_dir = model_info[0] if model_info else None

create_tab, results_tab, present_tab = st.tabs(["Create a quiz set", "Class results", "Presentation"])
with create_tab:
    ui.render_create_quiz_set(view, dataset)
with results_tab:
    chosen = ui.quiz_set_picker(view, "instr_results_set")
    if chosen is not None:
        st.fragment(ui.render_class_results, run_every=5)(view, chosen, dataset, model_dir)
with present_tab:
    shown = ui.quiz_set_picker(view, "instr_present_set")
    if shown is not None:
        ui.render_presentation(shown, model_dir)
