"""Dataset explorer: what is in the data, how the classes differ, and where it could leak."""

import streamlit as st

from hemato.ui.common import setup_page
from hemato.ui.explore import (
    dataset_picker,
    duplicates_section,
    embedding_section,
    overview_section,
    samples_section,
    statistics_section,
)

setup_page("Dataset explorer", icon="🔬")
st.caption(
    "Look at the data before training on it: class balance, the cells themselves, colour differences between "
    "labs, duplicates that leak between splits, and which classes a CNN's features already separate."
)

dataset = dataset_picker("explore")
if dataset is None:
    st.stop()

SECTIONS = {
    "Overview": overview_section,
    "Samples": samples_section,
    "Statistics": statistics_section,
    "Duplicates": duplicates_section,
    "Embedding map": embedding_section,
}
section = st.segmented_control("Section", list(SECTIONS), default="Overview", key="explore_section")
SECTIONS[section or "Overview"](dataset)
