"""Reading the files a config names (the config itself, ``password_file``): regular files only,
opened without blocking and read up to a cap.

``open()`` on a FIFO blocks until a writer comes, so ``--config.check`` or a probe run would
hang on ``password_file: /some/fifo``; a character device (``/dev/zero``) never ends. The file is
opened with ``O_NONBLOCK`` (no effect on a regular file), checked with ``fstat`` and refused
unless it is a regular file; then at most ``limit`` bytes are read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path``; raise :class:`OSError` (``strerror`` says why, without a byte of
    the file) when it cannot be opened, is not a regular file or is larger than ``limit``."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "a special file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})")
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than {_size(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)
