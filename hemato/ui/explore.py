"""Streamlit pieces of the Dataset explorer: dataset picker, job polling, sample grid and the page's sections."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from hemato import jobs
from hemato.config import get_settings
from hemato.data import explore
from hemato.data.archive import ArchiveError, extract_zip, uploads_dir
from hemato.data.datasets import Dataset, DatasetError
from hemato.data.imaging import ImageError, open_image
from hemato.status import known_datasets
from hemato.ui.common import dataset_or_error, load_dataset
from hemato.ui.jobs import job_status, render_job
from hemato.vision.embedding import embedding_key, load_embedding, sample_rows

CONFIGURED = "Configured dataset"
FOLDER = "A folder path…"
ZIP = "Upload a zip…"
SPLIT_COLOURS = {"train": "#4c78a8", "val": "#f58518", "test": "#54a24b", "excluded": "#9d9d9d", "(none)": "#b279a2"}


# --------------------------------------------------------------------------------------------- datasets


def dataset_options() -> dict[str, Path | None]:
    """The picker's choices: the configured dataset, other shared ones, a typed folder and a zip upload."""
    configured = get_settings().data_dir
    options: dict[str, Path | None] = {}
    for i, (name, path) in enumerate(known_datasets(configured)):
        options[f"{CONFIGURED} ({name})" if i == 0 and configured is not None else name] = path
    options[FOLDER] = None
    options[ZIP] = None
    return options


@st.cache_data(show_spinner="Unpacking the zip…", max_entries=16)
def _extracted(digest: str, home: str, _data: bytes) -> str:
    return str(extract_zip(_data, uploads_dir(Path(home))))


def _extract_upload(upload: st.runtime.uploaded_file_manager.UploadedFile) -> Path | None:
    data = upload.getvalue()
    try:  # unpacked once per zip content (a refused zip is not cached: its error shows every time)
        return Path(_extracted(hashlib.sha256(data).hexdigest()[:16], str(get_settings().home), data))
    except ArchiveError as exc:
        st.error(f"{upload.name}: {exc}")
        return None


def dataset_picker(key: str = "explore") -> Dataset | None:
    """Sidebar choice of dataset; shows a clear message and returns None when it cannot be used."""
    options = dataset_options()
    labels = list(options)
    remembered = st.session_state.get(f"{key}_source_memory")
    index = labels.index(remembered) if remembered in labels else 0
    choice = st.sidebar.radio("Dataset", labels, index=index, key=f"{key}_source")
    st.session_state[f"{key}_source_memory"] = choice
    path = options[choice]
    if choice == FOLDER:
        typed = st.sidebar.text_input("Dataset folder", key=f"{key}_folder", placeholder="/path/to/cells")
        if not typed.strip():
            st.info("Type the path of a folder with one sub-folder per class (optionally under train/val/test).")
            return None
        path = Path(typed.strip()).expanduser()
    elif choice == ZIP:
        upload = st.sidebar.file_uploader("Zip of class folders", type=["zip"], key=f"{key}_zip")
        if upload is None:
            st.info("Upload a .zip holding one folder per class (optionally under train/val/test).")
            return None
        path = _extract_upload(upload)
        if path is None:
            return None
    return dataset_or_error(
        path, "No dataset is configured: set HEMATO_DATA_DIR or pick another source in the sidebar."
    )


# --------------------------------------------------------------------------------------------- jobs


def _job(kind: str, key: str, frame: pd.DataFrame, label: str, **params: object) -> jobs.Job | None:
    """Start (or join) an explorer job on ``frame`` (written to the cache for the worker); None after an error.

    Only called when the job's output is missing, so a finished job of the same key is replaced, not reused.
    """
    cache_dir = get_settings().cache_dir
    try:
        frame_path = explore.save_frame(frame, cache_dir, key)
        params = {"frame_path": str(frame_path), "cache_dir": str(cache_dir), **params}
        return jobs.submit(kind, params, key=key, label=label, force=True)
    except (jobs.JobError, OSError) as exc:
        st.error(f"{label} could not start: {exc}")
        return None


def stats_for(frame: pd.DataFrame, title: str) -> explore.ExploreStats | None:
    """Cached statistics of ``frame``; if missing, start the background build and show its progress."""
    cache_dir = get_settings().cache_dir
    key = explore.files_key(frame["path"].tolist())
    stats = _cached_stats(str(cache_dir), key, frame)
    if stats is not None:
        return stats
    st.caption(
        f"Measuring {len(frame):,} images once (size, colour, perceptual hash, thumbnail); "
        "the result is cached on disk and instant afterwards."
    )
    found = jobs.find("explore_stats", key)
    if found is not None and found.state == "failed":
        render_job(found, f"explore_stats_{key}")
        if not st.button("Try again", key=f"explore_stats_retry_{key}"):
            return None
    job = found if found is not None and found.active else _job("explore_stats", key, frame, f"Measuring {title}")
    if job is not None:
        job_status(job.id, f"explore_stats_{key}")
    return None


@st.cache_data(show_spinner=False, max_entries=8)
def _cached_stats_inner(cache_dir: str, key: str, _frame: pd.DataFrame) -> explore.ExploreStats | None:
    return explore.load_stats(_frame, Path(cache_dir), key)


def _cached_stats(cache_dir: str, key: str, frame: pd.DataFrame) -> explore.ExploreStats | None:
    stats = _cached_stats_inner(cache_dir, key, frame)
    if stats is None:
        _cached_stats_inner.clear()  # do not remember "not built yet"
    return stats


# --------------------------------------------------------------------------------------------- overview


def class_distribution_figure(ds: Dataset) -> go.Figure:
    """Images per class, stacked by split when the dataset has one."""
    frame = ds.frame.assign(split=ds.frame["split"].fillna("(none)"))
    counts = frame.groupby(["label", "split"]).size().reset_index(name="images")
    fig = px.bar(
        counts,
        x="label",
        y="images",
        color="split",
        color_discrete_map=SPLIT_COLOURS,
        category_orders={"label": ds.classes, "split": [*ds.splits, "(none)"]},
        text_auto=True,
    )
    fig.update_layout(height=360, margin={"t": 30, "b": 10}, xaxis_title=None, legend_title="split")
    return fig


def split_table(ds: Dataset) -> pd.DataFrame:
    """Class × split counts with totals and each class's share."""
    table = ds.split_counts() if ds.splits else pd.DataFrame({"images": pd.Series(ds.class_counts())})
    table = table.copy()
    table["total"] = table.sum(axis=1)
    table["share"] = (table["total"] / table["total"].sum()).map("{:.1%}".format)
    totals = table.drop(columns="share").sum()
    table.loc["ALL"] = [*totals.tolist(), "100.0%"]
    table.index.name = "class"
    return table


def overview_section(ds: Dataset) -> None:
    """Counts per class and split, and what the data layer found."""
    cols = st.columns(4)
    cols[0].metric("Images", f"{len(ds):,}")
    cols[1].metric("Classes", len(ds.classes))
    cols[2].metric("Splits", ", ".join(ds.splits) or "none")
    cols[3].metric("Excluded by split file", ds.excluded)
    st.plotly_chart(class_distribution_figure(ds), key="explore_class_chart")
    st.markdown("**Split composition**")
    st.dataframe(split_table(ds), key="explore_split_table")
    counts = ds.class_counts()
    if counts and max(counts.values()) >= 2 * min(counts.values()):
        st.info(
            f"Classes are imbalanced ({max(counts.values()):,} vs {min(counts.values()):,} images): "
            "look at per-class recall, not only accuracy, and consider class weights when training."
        )
    if not ds.splits:
        st.caption("This dataset has no split; training assigns a stratified 70/15/15 one.")
    if ds.problems:
        st.warning(f"{len(ds.problems)} files listed but missing, e.g. {ds.problems[0][0]}.")
    st.caption(f"Source: {ds.source} · `{ds.root}`")


# --------------------------------------------------------------------------------------------- samples


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _show_thumb(path: str, cache_dir: Path, caption: str) -> bool:
    try:
        st.image(str(explore.thumbnail_path(path, cache_dir)), caption=caption, width="stretch")
    except (ImageError, OSError) as exc:
        st.warning(f"{Path(path).name}: {getattr(exc, 'reason', exc)}")
        return False
    return True


@st.fragment
def samples_section(ds: Dataset) -> None:
    """Filterable, paged grid of thumbnails with a larger view of the chosen image."""
    cache_dir = get_settings().cache_dir
    frame = ds.frame
    f1, f2, f3, f4, f5 = st.columns([4, 2, 2, 1, 1.4])
    classes = f1.multiselect("Classes", ds.classes, default=ds.classes, key="explore_grid_classes")
    split = f2.selectbox("Split", ["all", *ds.splits], key="explore_grid_split")
    order = f3.selectbox("Order", ["shuffled", "by file name"], key="explore_grid_order")
    per_page = f4.selectbox("Per page", [12, 24, 48], index=1, key="explore_grid_per_page")
    if order == "shuffled":  # a fixed shuffle, so page 3 stays page 3 across reruns
        frame = frame.iloc[np.random.default_rng(0).permutation(len(frame))]
    chosen = frame[frame["label"].isin(classes)]
    if split != "all":
        chosen = chosen[chosen["split"] == split]
    if chosen.empty:
        st.info("No image matches these filters.")
        return
    n_pages = max(1, -(-len(chosen) // per_page))
    page = f5.number_input(f"Page (of {n_pages:,})", 1, n_pages, 1, key="explore_grid_page")
    st.caption(f"{len(chosen):,} images match.")
    rows = chosen.iloc[(page - 1) * per_page : page * per_page]
    grid_col, view_col = st.columns([3, 1])
    with grid_col:
        columns = st.columns(6)
        for i, row in enumerate(rows.itertuples(index=False)):
            with columns[i % 6]:
                # Class as caption, split on the button: one line each, so the grid stays aligned.
                if _show_thumb(row.path, cache_dir, row.label) and st.button(
                    f"View · {row.split}" if row.split else "View",
                    key=f"explore_view_{(page - 1) * per_page + i}",
                    width="stretch",
                ):
                    st.session_state["explore_selected"] = row.path
    with view_col:
        selected = st.session_state.get("explore_selected")
        match = frame[frame["path"] == selected] if selected else frame.iloc[:0]
        if match.empty:
            st.caption("Press **View** under an image for a larger view (the button names its split).")
            return
        row = match.iloc[0]
        try:
            img = open_image(row["path"])
        except ImageError as exc:
            st.error(str(exc))
            return
        st.image(img, caption=Path(row["path"]).name, width="stretch")
        st.markdown(
            f"**Class:** {row['label']}  \n**Split:** {row['split'] or '—'}  \n"
            f"**Size:** {img.width}×{img.height} px  \n**File:** `{_relative(row['path'], ds.root)}`"
        )


# --------------------------------------------------------------------------------------------- statistics


def _swatches(summary: pd.DataFrame) -> str:
    cells = []
    for label, row in summary.iterrows():
        colour = f"rgb({row['mean R']:.0f},{row['mean G']:.0f},{row['mean B']:.0f})"
        cells.append(
            f"<div style='display:inline-block;margin:0 10px 6px 0;text-align:center;font-size:0.8em'>"
            f"<div style='width:64px;height:40px;border-radius:6px;background:{colour};border:1px solid #ccc'></div>"
            f"{label}</div>"
        )
    return "".join(cells)


def histogram_figure(named_stats: dict[str, explore.ExploreStats], label: str) -> go.Figure:
    """Mean R, G, B histograms of one class, one panel per dataset."""
    from plotly.subplots import make_subplots

    names = list(named_stats)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    centres = (np.arange(explore.HIST_BINS) + 0.5) * 256 / explore.HIST_BINS
    for col, name in enumerate(names, start=1):
        hist = explore.mean_histograms(named_stats[name]).get(label)
        if hist is None:
            continue
        for channel, colour in enumerate(("red", "green", "blue")):
            fig.add_trace(
                go.Scatter(x=centres, y=hist[channel], name=colour, line={"color": colour}, showlegend=col == 1),
                row=1,
                col=col,
            )
    fig.update_layout(height=300, margin={"t": 40, "b": 10}, yaxis_title="share of pixels")
    fig.update_xaxes(title_text="intensity", range=[0, 255])
    return fig


def spread_figure(named_stats: dict[str, explore.ExploreStats], column: str) -> go.Figure:
    """Box plot of one per-image measurement by class, coloured by dataset."""
    parts = [s.table.assign(dataset=name) for name, s in named_stats.items()]
    table = pd.concat(parts, ignore_index=True)
    table = table[table["error"].fillna("") == ""]
    fig = px.box(
        table, x="label", y=column, color="dataset", points=False, color_discrete_sequence=["#b0243b", "#4c78a8"]
    )
    fig.update_layout(height=320, margin={"t": 30, "b": 10}, xaxis_title=None, boxmode="group")
    return fig


def statistics_section(ds: Dataset) -> None:
    """Per-class size, colour and brightness/contrast statistics, side by side with a second lab."""
    others = {name: path for name, path in known_datasets(None) if path != ds.root.resolve()}
    default = next((i for i, name in enumerate(others) if "bccd" in name.lower()), 0)
    compare = st.selectbox(
        "Compare with (another lab or stain)",
        ["none", *others],
        index=default + 1 if others else 0,
        key="explore_compare",
    )
    named: dict[str, explore.ExploreStats] = {}
    stats = stats_for(explore.scan_frame(ds), ds.name)
    if stats is not None:
        named[ds.name] = stats
    if compare != "none":
        try:
            other = load_dataset(str(others[compare]))
            other_stats = stats_for(explore.scan_frame(other), compare)
            if other_stats is not None:
                named[compare] = other_stats
        except (DatasetError, OSError) as exc:
            st.error(str(exc))
    if not named:
        return
    columns = st.columns(len(named))
    for col, (name, s) in zip(columns, named.items(), strict=True):
        with col:
            st.markdown(f"**{name}**")
            summary = explore.class_summary(s)
            st.markdown(_swatches(summary), unsafe_allow_html=True)
            st.dataframe(summary, key=f"explore_summary_{name}")
            errors = s.table[s.table["error"].fillna("") != ""]
            if len(errors):
                st.warning(f"{len(errors)} unreadable file(s), e.g. {errors['error'].iloc[0]}")
    st.caption(
        "Mean colour is the average pixel of each class. Different labs stain and photograph differently: "
        "a model that learned the PBC pink may misread another lab's purple."
    )
    labels = sorted({label for s in named.values() for label in s.table["label"].dropna().unique()})
    labels = [*[c for c in ds.classes if c in labels], *[c for c in labels if c not in ds.classes]]
    label = st.selectbox("Class for histograms and samples", labels, key="explore_hist_class")
    st.plotly_chart(histogram_figure(named, label), key="explore_hist_chart")
    left, right = st.columns(2)
    left.plotly_chart(spread_figure(named, "brightness"), key="explore_brightness_chart")
    right.plotly_chart(spread_figure(named, "contrast"), key="explore_contrast_chart")
    st.caption("Brightness = mean grey level; contrast = standard deviation of grey levels within an image.")
    cache_dir = get_settings().cache_dir
    sample_cols = st.columns(len(named))
    for col, (name, s) in zip(sample_cols, named.items(), strict=True):
        with col:
            st.markdown(f"**{label} in {name}**")
            rows = s.table[(s.table["label"] == label) & (s.table["error"].fillna("") == "")]
            picks = rows.sample(n=min(4, len(rows)), random_state=0) if len(rows) else rows
            thumbs = st.columns(4)
            for thumb_col, path in zip(thumbs, picks["path"], strict=False):
                with thumb_col:
                    _show_thumb(path, cache_dir, f"{int(rows.loc[rows['path'] == path, 'width'].iloc[0])} px")


# --------------------------------------------------------------------------------------------- duplicates


@st.cache_data(show_spinner="Comparing perceptual hashes…", max_entries=16)
def _duplicate_groups(key: str, max_distance: int, _stats: explore.ExploreStats) -> list[explore.DuplicateGroup]:
    return explore.find_duplicates(_stats, max_distance)


def duplicates_section(ds: Dataset) -> None:
    """Byte-identical and perceptually near-identical images, with cross-split leaks flagged."""
    st.markdown(explore.LEAK_EXPLANATION)
    stats = stats_for(explore.scan_frame(ds), ds.name)
    if stats is None:
        return
    max_distance = st.slider(
        "Near-duplicate threshold (bits of the 64-bit perceptual hash that may differ)",
        0,
        12,
        explore.DEFAULT_MAX_DISTANCE,
        key="explore_dup_distance",
        help="0 = only identical images; 4 catches re-encoded or slightly altered copies; above ~8, "
        "different cells that merely look alike start to match.",
    )
    groups = _duplicate_groups(stats.key, max_distance, stats)
    cols = st.columns(4)
    cols[0].metric("Groups", len(groups))
    cols[1].metric("Byte-identical groups", sum(g.identical for g in groups))
    cols[2].metric("Crossing splits", sum(g.crosses_splits for g in groups))
    cols[3].metric("Crossing classes", sum(g.crosses_classes for g in groups))
    if ds.excluded:
        st.info(
            f"The split file marks {ds.excluded} files `excluded`: they are scanned here too, so you can see "
            "the duplicates it removed (a group whose extra copies are excluded no longer leaks)."
        )
    if not groups:
        st.success("No duplicates at this threshold.")
        return
    table = explore.duplicates_table(groups, ds.root)
    st.dataframe(table, hide_index=True, key="explore_dup_table")
    choice = st.selectbox(
        "Show group", table["group"].tolist(), key="explore_dup_group", format_func=lambda g: f"group {g}"
    )
    group = groups[int(choice) - 1]
    cache_dir = get_settings().cache_dir
    for col, (path, label, split) in zip(
        st.columns(6), zip(group.paths, group.labels, group.splits, strict=True), strict=False
    ):
        with col:
            _show_thumb(path, cache_dir, f"{Path(path).name} · {label} · {split or '—'}")


# --------------------------------------------------------------------------------------------- embedding


def embedding_section(ds: Dataset) -> None:
    """2-D map of backbone features; points coloured by class, click a point to see the cell."""
    settings = get_settings()
    c1, c2, c3 = st.columns([2, 2, 1])
    sizes = [n for n in (500, 1000, 2000, 5000) if n < len(ds)] + [len(ds)]
    default = sizes.index(1000) if 1000 in sizes else len(sizes) - 1
    n = c1.selectbox("Images in the map", sizes, index=default, key="explore_embed_n", format_func="{:,}".format)
    method = c2.radio("Projection", ["pca", "tsne"], key="explore_embed_method", horizontal=True, format_func=str.upper)
    sample = sample_rows(ds.frame, n, seed=0)
    embedding = load_embedding(sample, settings.cache_dir, method)
    job_key = f"{embedding_key(sample['path'].tolist())}_{method}"
    if embedding is None:
        st.caption(
            f"Extracts MobileNetV2 (ImageNet) features of {len(sample):,} images once (≈ 15 ms per image on "
            "this CPU, cached per image on disk and shared with training)."
        )
        found = jobs.find("explore_embedding", job_key)
        running = found is not None and found.active
        if c3.button("Compute map", key="explore_embed_go", disabled=running, type="primary"):
            weights = str(settings.weights_dir) if settings.weights_dir else None
            label = f"Embedding {len(sample):,} images"
            found = _job("explore_embedding", job_key, sample, label, weights_dir=weights, method=method)
        if found is not None and (found.active or found.state == "failed"):
            job_status(found.id, f"explore_embed_{job_key}")
        return
    table = embedding.frame()
    title = "PCA of MobileNetV2 features" if method == "pca" else "t-SNE of MobileNetV2 features"
    if embedding.explained:
        title += f" (axes explain {embedding.explained[0]:.0%} and {embedding.explained[1]:.0%} of the variance)"
    fig = px.scatter(
        table,
        x="x",
        y="y",
        color="label",
        hover_data={"file": True, "split": True, "x": False, "y": False, "label": True},
        category_orders={"label": ds.classes},
        color_discrete_sequence=px.colors.qualitative.Set1,
        title=title,
        opacity=0.75,
    )
    fig.update_traces(marker={"size": 6})
    fig.update_layout(height=560, margin={"t": 50, "b": 10}, xaxis_title=None, yaxis_title=None)
    st.caption(
        "Click a point (or lasso several) to see the cells. Overlapping colours = classes the frozen ImageNet "
        "features do not separate by themselves. PCA keeps only two directions of variance; t-SNE keeps "
        "neighbourhoods and usually shows the class clusters more clearly."
    )
    event = st.plotly_chart(fig, key="explore_embed_chart", on_select="rerun", selection_mode=("points", "lasso"))
    points = event.selection.points if event and event.selection else []
    picked = []
    for point in points[:12]:
        curve, index = point.get("curve_number"), point.get("point_index")
        label = fig.data[curve].name if curve is not None else None
        rows = table[table["label"] == label]
        if index is not None and index < len(rows):
            picked.append(rows.iloc[index])
    if picked:
        cols = st.columns(6)
        for i, row in enumerate(picked):
            with cols[i % 6]:
                _show_thumb(row["path"], settings.cache_dir, f"{row['label']} · {row['file']}")
