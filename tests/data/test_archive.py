"""Zip uploads extract into a fresh folder and refuse traversal, absolute paths, links, bombs and non-zips."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from hemato.data.archive import ArchiveError, extract_zip, uploads_dir
from hemato.data.datasets import discover_dataset


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_real_dataset_zip_extracts_and_is_discovered(pbc_mini: Path, isolated_home: Path) -> None:
    entries = {}
    for cls in ("EOSINOPHIL", "MONOCYTE"):
        for img in sorted((pbc_mini / cls).glob("*.jpg"))[:3]:
            entries[f"cells/{cls}/{img.name}"] = img.read_bytes()
    entries["__MACOSX/cells/._junk"] = b"resource fork"
    target = extract_zip(_zip(entries), uploads_dir(isolated_home))
    assert target.parent == isolated_home / "uploads"
    assert len(target.name) == 32
    ds = discover_dataset(target)
    assert ds.classes == ["EOSINOPHIL", "MONOCYTE"]
    assert len(ds) == 6
    assert not (target / "__MACOSX").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "cells/../../evil.txt", "..\\evil.txt"])
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    parent = tmp_path / "uploads"
    with pytest.raises(ArchiveError, match="escapes"):
        extract_zip(_zip({"ok/a.txt": b"a", name: b"evil"}), parent)
    assert not (tmp_path / "evil.txt").exists()
    assert not parent.exists() or not any(parent.iterdir()), "nothing may be left behind"


@pytest.mark.parametrize("name", ["/etc/evil.txt", "C:/evil.txt", "\\\\server\\evil.txt"])
def test_absolute_paths_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArchiveError, match="absolute"):
        extract_zip(_zip({name: b"evil"}), tmp_path / "uploads")


def test_symlinks_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("cells/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_zip(buffer.getvalue(), tmp_path / "uploads")


def test_too_large_content_is_refused_and_cleaned_up(tmp_path: Path) -> None:
    data = _zip({"a/big.bin": b"\0" * 200_000, "a/b.bin": b"1"})
    with pytest.raises(ArchiveError, match="limit"):
        extract_zip(data, tmp_path / "uploads", max_total_bytes=100_000)
    with pytest.raises(ArchiveError, match="files"):
        extract_zip(data, tmp_path / "uploads", max_files=1)


def test_forged_header_size_is_refused_and_cleaned_up(tmp_path: Path) -> None:
    # Forge the declared size: the zip says 10 bytes, the stream holds 200 kB (a zip-bomb trick).
    data = bytearray(_zip({"a/bomb.bin": b"\0" * 200_000}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.infolist()[0]
    real = info.file_size.to_bytes(4, "little")
    fake = (10).to_bytes(4, "little")
    central = data.rfind(b"PK\x01\x02")
    offset = data.index(real, central)  # uncompressed size in the central directory entry
    data[offset : offset + 4] = fake
    with pytest.raises(ArchiveError, match=r"damaged|more than"):
        extract_zip(bytes(data), tmp_path / "uploads", max_total_bytes=100_000)
    assert not any((tmp_path / "uploads").iterdir())


@pytest.mark.parametrize("payload", [b"this is not a zip", b"", b"PK\x03\x04broken"])
def test_non_zip_gets_a_clear_error(tmp_path: Path, payload: bytes) -> None:
    with pytest.raises(ArchiveError, match="not a valid zip"):
        extract_zip(payload, tmp_path / "uploads")


def test_empty_zip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="empty"):
        extract_zip(_zip({"folder/": b""}), tmp_path / "uploads")
