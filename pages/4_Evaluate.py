"""Evaluate: how good is a model, where does it fail, how well calibrated is it, and does it travel to another lab."""

import streamlit as st

from hemato.ui import evaluate as ev
from hemato.ui.common import model_picker, setup_page

setup_page("Evaluate", icon="📊")
st.caption(
    "Score a trained model on a dataset split: accuracy, per-class errors (click the confusion matrix to see the "
    "images), calibration, several models side by side, and the same model on another lab's cells."
)

model_dir = model_picker("evaluate_model")
if model_dir is None:
    st.stop()

results_tab, compare_tab, crosslab_tab = st.tabs(["Results", "Compare models", "Cross-lab check"])
with results_tab:
    data = ev.dataset_picker("evaluate_data")
    if data is not None:
        result = ev.evaluation_result(model_dir, data[0], data[1], "evaluate_main")
        if result is not None:
            ev.show_results(result, model_dir, "evaluate_main")
with compare_tab:
    ev.compare_panel(data, "evaluate_compare")
with crosslab_tab:
    ev.crosslab_panel(model_dir, "evaluate_crosslab")
