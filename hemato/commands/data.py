"""``python -m hemato data check PATH``: judge a dataset before training on it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hemato.data.datasets import DataReport, check_dataset, discover_dataset


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group."""
    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="count images per class/split and list unreadable files")
    check.add_argument("path", type=Path, help="dataset folder or CSV manifest")
    check.add_argument("--split-csv", type=Path, help="manifest with paths relative to PATH")
    check.add_argument("--quick", action="store_true", help="skip full decoding of every image")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=run_check)


def report_dict(report: DataReport) -> dict:
    """The report as plain JSON-able data."""
    ds = report.dataset
    return {
        "root": str(ds.root),
        "source": ds.source,
        "manifest": str(ds.manifest) if ds.manifest else None,
        "n_images": len(ds),
        "n_excluded": ds.excluded,
        "classes": ds.classes,
        "class_counts": report.class_counts,
        "split_counts": {
            split: {k: int(v) for k, v in report.split_counts[split].items()} for split in report.split_counts
        },
        "unreadable": [{"path": p, "reason": r} for p, r in report.unreadable],
        "suspicious": [{"path": p, "reason": r} for p, r in report.suspicious],
        "errors": report.errors,
        "usable": report.usable,
    }


def run_check(args: argparse.Namespace) -> int:
    """Print the dataset report; exit 1 when the dataset is unusable."""
    report = check_dataset(discover_dataset(args.path, args.split_csv), decode=not args.quick)
    if args.json:
        print(json.dumps(report_dict(report), indent=2))
        return 0 if report.usable else 1
    ds = report.dataset
    print(f"Dataset: {ds.root} ({ds.source}{', ' + ds.manifest.name if ds.manifest else ''})")
    excluded = f" ({ds.excluded} more marked excluded in the manifest)" if ds.excluded else ""
    print(f"Images: {len(ds)} in {len(ds.classes)} classes{excluded}")
    width = max((len(c) for c in report.class_counts), default=5)
    for label, count in report.class_counts.items():
        print(f"  {label:<{width}}  {count:>6}")
    if not report.split_counts.empty:
        print("Splits:")
        print(report.split_counts.to_string())
    for title, rows in (("Unreadable", report.unreadable), ("Suspicious", report.suspicious)):
        if rows:
            print(f"{title} files ({len(rows)}):")
            for path, reason in rows:
                print(f"  {path}: {reason}")
    for error in report.errors:
        print(f"UNUSABLE: {error}")
    print("OK: dataset is usable." if report.usable else "Dataset is not usable; fix the problems above.")
    return 0 if report.usable else 1
