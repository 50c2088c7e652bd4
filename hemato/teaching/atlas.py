"""The cell atlas: per-class teaching content loaded from ``hemato/atlas/<CLASS>.yaml`` files.

Content is data, not code: add a class by adding a YAML file with the fields of :class:`AtlasEntry`.
A class in the dataset without a file simply has no entry (the UI says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hemato.data.datasets import normalise_label

ATLAS_DIR = Path(__file__).resolve().parent / "atlas_cards"
RECOGNISE_FIELDS = ("size", "nucleus", "chromatin", "cytoplasm", "granules")


@dataclass(frozen=True)
class AtlasEntry:
    """Teaching content for one white-cell class."""

    label: str
    name: str
    key_cue: str
    hint: str
    function: str
    recognise: dict[str, str]
    normal_low_pct: float | None
    normal_high_pct: float | None
    normal_absolute: str
    normal_note: str
    raised_in: list[str]
    lowered_in: list[str]
    aliases: list[str] = field(default_factory=list)
    confused_with: list[dict[str, str]] = field(default_factory=list)

    @property
    def normal_share(self) -> str:
        """The normal share of white cells as text, e.g. ``40–70 % of white cells``."""
        if self.normal_low_pct is None or self.normal_high_pct is None:
            return "not recorded"
        return f"{self.normal_low_pct:g}–{self.normal_high_pct:g} % of white cells"


@dataclass
class Atlas:
    """All entries found, plus files that could not be read."""

    entries: dict[str, AtlasEntry]
    problems: list[str] = field(default_factory=list)

    def find(self, label: str) -> AtlasEntry | None:
        """The entry for a dataset label (matched by name or alias, case-insensitive), or None."""
        key = normalise_label(label)
        if key in self.entries:
            return self.entries[key]
        for entry in self.entries.values():
            if key in entry.aliases or key == normalise_label(entry.name):
                return entry
        return None

    def tabs_for(self, data_classes: list[str]) -> list[str]:
        """The dataset's classes, then the atlas classes the dataset does not have (e.g. BASOPHIL)."""
        covered = {self.find(c).label for c in data_classes if self.find(c) is not None}
        return list(data_classes) + [label for label in sorted(self.entries) if label not in covered]

    def key_cue(self, label: str) -> str:
        """One-line recognition cue for ``label``, or a note that the atlas has no entry yet."""
        entry = self.find(label)
        return entry.key_cue if entry else f"No atlas entry yet for {label}."

    def hint(self, label: str) -> str:
        """A morphology hint that points at what to look for without naming the class."""
        entry = self.find(label)
        return entry.hint if entry else "Look at nucleus shape, chromatin, cytoplasm colour and granules."


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _pct(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_entry(label: str, data: dict[str, Any]) -> AtlasEntry:
    """Build an entry from one file's parsed YAML.

    Raises:
        ValueError: Required fields (name, key_cue, function, recognise) are missing.
    """
    if not isinstance(data, dict):
        raise ValueError("the file does not hold a mapping of fields")
    missing = [k for k in ("name", "key_cue", "function", "recognise") if not data.get(k)]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    recognise = data.get("recognise") or {}
    share = data.get("normal_share") or {}
    return AtlasEntry(
        label=normalise_label(label),
        name=_text(data["name"]),
        key_cue=_text(data["key_cue"]),
        hint=_text(data.get("hint")) or "Look at nucleus shape, chromatin, cytoplasm colour and granules.",
        function=_text(data["function"]),
        recognise={k: _text(recognise.get(k)) for k in RECOGNISE_FIELDS if recognise.get(k)},
        normal_low_pct=_pct(share.get("low_pct")),
        normal_high_pct=_pct(share.get("high_pct")),
        normal_absolute=_text(share.get("absolute")),
        normal_note=_text(share.get("note")),
        raised_in=[_text(x) for x in data.get("raised_in") or []],
        lowered_in=[_text(x) for x in data.get("lowered_in") or []],
        aliases=[normalise_label(a) for a in data.get("aliases") or []],
        confused_with=[
            {"class": normalise_label(c.get("class", "")), "how": _text(c.get("how"))}
            for c in data.get("confused_with") or []
            if isinstance(c, dict)
        ],
    )


def load_atlas(folder: Path = ATLAS_DIR) -> Atlas:
    """Read every ``*.yaml``/``*.yml`` file in ``folder``; unreadable files are reported, not fatal."""
    import yaml

    atlas = Atlas({})
    if not Path(folder).is_dir():
        atlas.problems.append(f"Atlas folder {folder} is missing.")
        return atlas
    for path in sorted(Path(folder).glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            entry = parse_entry(path.stem, data)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
            atlas.problems.append(f"{path.name}: {exc}")
            continue
        atlas.entries[entry.label] = entry
    return atlas


def gallery_examples(frame: pd.DataFrame, label: str, count: int = 6, seed: int = 0) -> list[str]:
    """A reproducible random sample of image paths of one class from a dataset frame."""
    paths = sorted(frame.loc[frame["label"] == label, "path"].tolist())
    if len(paths) <= count:
        return paths
    rng = pd.Series(paths).sample(n=count, random_state=seed)
    return rng.tolist()


def hard_examples(predictions: pd.DataFrame, label: str, count: int = 6) -> pd.DataFrame:
    """The images of ``label`` the model is least confident about (lowest probability of the true class)."""
    if predictions is None or predictions.empty:
        return pd.DataFrame(columns=["path", "label", "pred", "conf", "true_prob"])
    of_class = predictions[predictions["label"] == label]
    return of_class.sort_values("true_prob", ascending=True).head(count).reset_index(drop=True)
