"""Atlas content: every file parses, covers the required fields, and missing classes degrade gracefully."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hemato.data.datasets import discover_dataset
from hemato.teaching.atlas import ATLAS_DIR, RECOGNISE_FIELDS, gallery_examples, hard_examples, load_atlas


def test_every_shipped_entry_is_complete() -> None:
    atlas = load_atlas()
    assert not atlas.problems
    assert {"NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "BASOPHIL"} <= set(atlas.entries)
    for entry in atlas.entries.values():
        assert set(entry.recognise) == set(RECOGNISE_FIELDS), entry.label
        assert entry.raised_in and entry.lowered_in and entry.key_cue and entry.hint and entry.function
        assert entry.normal_low_pct is not None and entry.normal_high_pct is not None
        assert 0 <= entry.normal_low_pct < entry.normal_high_pct <= 100
        assert entry.name.upper() not in entry.hint.upper()  # a hint must not give the answer away


def test_normal_shares_are_plausible_for_adult_blood() -> None:
    atlas = load_atlas()
    neutrophil, lymphocyte, basophil = (atlas.find(c) for c in ("NEUTROPHIL", "LYMPHOCYTE", "BASOPHIL"))
    assert neutrophil.normal_low_pct >= 40 and lymphocyte.normal_high_pct <= 45 and basophil.normal_high_pct <= 2
    assert neutrophil.normal_share == "40–70 % of white cells"


def test_aliases_and_missing_classes() -> None:
    atlas = load_atlas()
    assert atlas.find("eos").label == "EOSINOPHIL"
    assert atlas.find("Monocyte").label == "MONOCYTE"
    assert atlas.find("PLATELET") is None
    assert atlas.key_cue("PLATELET") == "No atlas entry yet for PLATELET."
    assert "nucleus" in atlas.hint("PLATELET")
    assert atlas.tabs_for(["EOS", "PLATELET"]) == [
        "EOS",
        "PLATELET",
        "BASOPHIL",
        "LYMPHOCYTE",
        "MONOCYTE",
        "NEUTROPHIL",
    ]


def test_broken_files_are_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "GOOD.yaml").write_text((ATLAS_DIR / "MONOCYTE.yaml").read_text())
    (tmp_path / "BROKEN.yaml").write_text("name: [unclosed")
    (tmp_path / "EMPTY.yaml").write_text("name: Empty\n")
    atlas = load_atlas(tmp_path)
    assert list(atlas.entries) == ["GOOD"]
    assert len(atlas.problems) == 2 and any("missing field" in p for p in atlas.problems)
    assert load_atlas(tmp_path / "nowhere").problems


def test_gallery_and_hard_examples(pbc_mini: Path) -> None:
    frame = discover_dataset(pbc_mini).frame
    picks = gallery_examples(frame, "MONOCYTE", count=4, seed=1)
    assert len(picks) == 4 and picks == gallery_examples(frame, "MONOCYTE", count=4, seed=1)
    assert all("MONOCYTE" in p for p in picks)
    assert gallery_examples(frame, "BASOPHIL") == []
    predictions = pd.DataFrame(
        {
            "path": list("abc"),
            "label": ["A", "A", "B"],
            "pred": list("ABB"),
            "conf": [0.9, 0.6, 0.8],
            "true_prob": [0.9, 0.4, 0.8],
        }
    )
    assert hard_examples(predictions, "A")["path"].tolist() == ["b", "a"]
    assert hard_examples(pd.DataFrame(), "A").empty
