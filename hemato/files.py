"""Safe file writes: a file is either its old or its new content, never half-written (readers poll these)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; renamed over ``target`` when the block succeeds.

    The temporary name keeps ``target``'s suffix (writers such as Pillow, pandas and Keras pick the format from
    it) and is unique per process and call, so concurrent writers never share one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(target: Path, data: str | bytes) -> Path:
    """Write ``data`` (text or bytes) to ``target`` atomically; return ``target``."""
    with atomic_path(target) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
    return Path(target)
