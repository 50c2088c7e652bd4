"""Train page: start background training runs, watch live curves, compare runs."""

import streamlit as st

from hemato.ui.common import setup_page
from hemato.ui.train import history_table, live_panel, run_form, start

setup_page("Train a model")
st.markdown(
    "Transfer learning in two phases: the **head** learns on cached backbone features (seconds per epoch), "
    "then the backbone's **top layers** are fine-tuned on augmented images at a lower learning rate. "
    "The small CNN trains from scratch, for the *why transfer learning?* comparison. "
    "Runs train in the background: leave the page, reload, or open a second tab — the run goes on."
)

config = run_form()
if config is not None:
    start(config)

st.subheader("Current run")
live_panel()

st.subheader("Run history")
history_table()
