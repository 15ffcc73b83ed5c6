"""Atomic file writes: the one place the project writes a file a user will see.

Every output is written to a temporary file in the destination folder, flushed to disk and renamed over the final
name (``os.replace`` is atomic on one file system), so a crash or a cancelled job never leaves a partial file under
a name the user will open.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    For writers that want a file name rather than bytes (video encoders, ``trimesh.export``). The temporary file is
    removed when the block raises, so nothing is left behind.

    Args:
        path: the final file name; its folder is created when missing.
        suffix: the temporary file's extension (some writers pick the format from it, e.g. ``".mp4"``).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with atomic_path(folder / "a.txt") as tmp:
        ...     _ = tmp.write_text("hello")
        >>> (folder / "a.txt").read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(descriptor)
    temp = Path(temp_name)
    try:
        yield temp
        with open(temp, "rb+") as handle:  # the writer may have closed its own handle: flush the data to disk
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename). Returns ``path``.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "sub" / "b.bin"
        >>> atomic_write(target, b"abc").read_bytes()
        b'abc'
    """
    path = Path(path)
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return path
