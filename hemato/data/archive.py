"""Safe extraction of user-uploaded zip files into ``HEMATO_HOME/uploads/<random id>/``.

Refuses what could escape the target folder or exhaust the disk: absolute paths, ``..`` components, drive
letters, symbolic links, too many files and too many uncompressed bytes. Sizes are counted while writing,
not trusted from the zip header, so a lying header cannot smuggle a zip bomb through.
"""

from __future__ import annotations

import io
import shutil
import stat
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

MAX_TOTAL_BYTES = 2 * 1024**3
MAX_FILES = 50_000
CHUNK = 1024 * 1024
SKIPPED_PREFIXES = ("__MACOSX/",)


class ArchiveError(ValueError):
    """A zip file that cannot be used, with a message saying why."""


def _safe_relative(name: str) -> PurePosixPath:
    """The member's path as a safe relative path, or raise ArchiveError."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise ArchiveError(f"The zip contains an absolute path ({name!r}); only relative paths are accepted.")
    parts = [p for p in PurePosixPath(cleaned).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ArchiveError(f"The zip contains a path that escapes its folder ({name!r}); refusing to extract it.")
    if not parts:
        raise ArchiveError(f"The zip contains an entry with an empty name ({name!r}).")
    return PurePosixPath(*parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def extract_zip(
    source: bytes | str | Path | IO[bytes],
    uploads_dir: Path,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_files: int = MAX_FILES,
) -> Path:
    """Check and extract a zip into a new random folder under ``uploads_dir``.

    Args:
        source: The zip as bytes, a path or a binary file object (e.g. a Streamlit upload).
        uploads_dir: Parent folder; a fresh ``<random id>/`` is created inside it.
        max_total_bytes: Refuse archives whose files add up to more than this (uncompressed).
        max_files: Refuse archives with more files than this.

    Returns:
        The folder the files were extracted into.

    Raises:
        ArchiveError: Not a zip, damaged, unsafe paths or links, or over a limit. Nothing is left on disk.
    """
    data = source if not isinstance(source, bytes) else io.BytesIO(source)
    try:
        archive = zipfile.ZipFile(data)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(
            "This is not a valid zip file (it may be damaged or another format); upload a .zip."
        ) from exc
    with archive:
        members = []
        for info in archive.infolist():
            if info.is_dir() or info.filename.replace("\\", "/").startswith(SKIPPED_PREFIXES):
                continue
            if _is_symlink(info):
                raise ArchiveError(f"The zip contains a symbolic link ({info.filename!r}); links are not accepted.")
            members.append((info, _safe_relative(info.filename)))
        if not members:
            raise ArchiveError("The zip is empty: it should contain class folders with images.")
        if len(members) > max_files:
            raise ArchiveError(f"The zip holds {len(members):,} files; the limit is {max_files:,}.")
        declared = sum(info.file_size for info, _ in members)
        if declared > max_total_bytes:
            raise ArchiveError(
                f"The zip unpacks to {declared / 1e6:,.0f} MB; the limit is {max_total_bytes / 1e6:,.0f} MB."
            )
        target = Path(uploads_dir) / uuid.uuid4().hex
        target.mkdir(parents=True)
        try:
            _write_members(archive, members, target, max_total_bytes)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return target


def _write_members(
    archive: zipfile.ZipFile, members: list[tuple[zipfile.ZipInfo, PurePosixPath]], target: Path, limit: int
) -> None:
    written = 0
    root = target.resolve()
    for info, relative in members:
        out = (root / relative).resolve()
        if root not in out.parents:
            raise ArchiveError(f"The zip entry {info.filename!r} would land outside the upload folder.")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(info) as src, out.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise ArchiveError(
                            f"The zip unpacks to more than {limit / 1e6:,.0f} MB (its header understates the size)."
                        )
                    dst.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError) as exc:
            raise ArchiveError(f"The zip is damaged or encrypted ({info.filename}: {exc}).") from exc


def uploads_dir(home: Path) -> Path:
    """The folder user uploads are extracted under (``HEMATO_HOME/uploads``)."""
    return Path(home) / "uploads"
