"""Read the files a deployment names (the deployment itself, a dotenv file, TLS files), bounded.

Only regular files are read, and only up to a size limit: a path that points at a FIFO, a device
(``/dev/zero``), a socket or a directory is refused before anything is read, so reading never blocks
and never exhausts memory. Every failure is a :class:`FileReadError` with a one-line reason.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: Largest deployment file read (10,000 numbers on 1,000 trunks take about 1 MB).
DEPLOYMENT_LIMIT = 16 * 1024 * 1024
#: Largest ``--env-file`` read.
ENV_FILE_LIMIT = 1024 * 1024
#: Largest certificate chain or private key read.
TLS_FILE_LIMIT = 1024 * 1024
#: Largest CA bundle read (the Mozilla bundle is about 220 KB).
CA_BUNDLE_LIMIT = 4 * 1024 * 1024

_CHUNK = 1024 * 1024
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileReadError(Exception):
    """A file cannot be read; the message is one line, ``<path>: <why>``."""


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is not a directory"
    if exc.errno == errno.ENAMETOOLONG:
        return "the path is too long"
    return exc.strerror or type(exc).__name__


def _check_mode(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise FileReadError(f"{path}: {_kind(mode)}, not a regular file")


def read_bounded(path: Path, limit: int) -> bytes:
    """The contents of the regular file ``path`` (symbolic links followed), at most ``limit`` bytes."""
    try:
        # stat before opening: opening a FIFO blocks and opening some devices has side effects
        _check_mode(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except ValueError:  # a NUL byte in the path
        raise FileReadError(f"{path!r}: not a valid path (it contains a NUL byte)") from None
    except OSError as exc:
        raise FileReadError(f"{path}: {_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        _check_mode(path, st.st_mode)  # replaced between stat and open
        if st.st_size > limit:
            raise FileReadError(f"{path}: {_size(st.st_size)}, larger than the limit of {_size(limit)}")
        chunks: list[bytes] = []
        total = 0
        while True:  # st_size can lie (/proc files say 0), so the read itself is bounded too
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileReadError(f"{path}: larger than the limit of {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise FileReadError(f"{path}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def read_text_bounded(path: Path, limit: int) -> str:
    """:func:`read_bounded` decoded as UTF-8 (a byte-order mark is dropped)."""
    data = read_bounded(path, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileReadError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
