"""Cell atlas: what each white cell does, how to recognise it, and real examples including the hard ones."""

import streamlit as st

from hemato.teaching.atlas import gallery_examples, hard_examples
from hemato.ui import quiz as ui
from hemato.ui.common import setup_page

setup_page("Cell atlas", icon="📖")
atlas = ui.atlas()
for problem in atlas.problems:
    st.warning(f"Atlas file skipped: {problem}")
dataset = ui.quiz_dataset()
with st.sidebar:
    model_info = ui.pick_model("atlas_model_picker")

data_classes = dataset.classes if dataset is not None else []
labels = atlas.tabs_for(data_classes)
st.markdown(
    "Sizes are given against a red cell (about 7.5 µm across), which is in almost every blood-film photograph. "
    "Percentages are shares of the white cells in an adult's blood."
)
predictions = ui.pool_predictions_view(model_info, dataset) if model_info and dataset is not None else None

for tab, label in zip(st.tabs([label.title() for label in labels]), labels, strict=True):
    with tab:
        entry = atlas.find(label)
        st.subheader(entry.name if entry else label.title())
        if label not in data_classes:
            st.caption("This class is not in the current dataset (other labs' data may have it).")
        ui.render_atlas_entry(entry, label)
        if dataset is None or label not in data_classes:
            continue
        st.markdown("**Examples from the dataset**")
        ui.render_gallery(gallery_examples(dataset.frame, label, count=6))
        st.markdown("**Hard examples** (the model's least confident on this class)")
        if model_info is None:
            st.caption("No model yet: hard examples appear once a model is trained.")
        elif predictions is not None:
            hard = hard_examples(predictions, label, count=6)
            captions = [
                f"{'❌' if row.pred != label else '✅'} model: {row.pred.title()} ({row.true_prob:.0%} {label.title()})"
                for row in hard.itertuples()
            ]
            ui.render_gallery(hard["path"].tolist(), captions)
