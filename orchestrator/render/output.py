"""Write a rendered tree atomically, or compare it with what is on disk.

The new tree is written into a sibling temporary directory, synced, and swapped with the old one
in a single ``renameat2(RENAME_EXCHANGE)`` (Linux), falling back to two renames elsewhere. A failed
render removes its temporary directory and leaves the old tree untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config.files import FileReadError, read_bounded
from orchestrator.render.renderer import MARKER, SECRET_MODE, RenderedFile

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: A file on disk larger than this is not read when comparing (it is reported as changed).
COMPARE_LIMIT = 64 * 1024 * 1024
#: What an unreadable or oversized file on disk compares as (never equal to a rendered file).
UNREADABLE = b"\0sipagent: unreadable\0"


class OutputError(Exception):
    """The output directory cannot be written or replaced."""


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False when the platform cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: filesystem or kernel without exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_files(root: Path, files: dict[str, RenderedFile]) -> None:
    dirs = {root}
    for rel, f in files.items():
        path = root / rel
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o755)
            dirs.add(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, f.mode)
        try:
            os.fchmod(fd, f.mode)  # the umask must not widen or narrow the mode
            os.write(fd, f.content)
            os.fsync(fd)
        finally:
            os.close(fd)
    for d in dirs:
        _fsync_dir(d)


def _looks_rendered(out: Path) -> bool:
    return (out / MARKER).is_file() or not any(out.iterdir())


def write_tree(files: dict[str, RenderedFile], out: Path, force: bool = False) -> None:
    """Replace ``out`` with ``files`` atomically.

    Refuses to replace a non-empty directory that sipagent did not render (no marker file) unless
    ``force`` is set, so a mistyped ``--out /etc`` does not wipe anything.
    """
    out = Path(os.path.abspath(out))
    if out.is_symlink():
        raise OutputError(f"{out} is a symbolic link: render into the directory it points to")
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a directory")
        if not force and not _looks_rendered(out):
            raise OutputError(
                f"{out} is not empty and was not rendered by sipagent (no {MARKER}); "
                "choose another directory or pass --force to replace it"
            )
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create a directory next to {out}: {exc.strerror}") from None
    try:
        os.chmod(tmp, 0o755)
        _write_files(tmp, files)
        if not out.exists():
            os.rename(tmp, out)
        elif _exchange(tmp, out):
            shutil.rmtree(tmp)  # now holds the previous tree
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rmdir(old)
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        _fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass
class TreeDiff:
    """Differences between a rendered tree and a directory on disk."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    mode_changed: list[tuple[str, int, int]] = field(default_factory=list)
    patches: dict[str, str] = field(default_factory=dict)

    @property
    def stale(self) -> bool:
        """True when the directory does not match the render."""
        return bool(self.added or self.removed or self.changed or self.mode_changed)


def _read(path: Path) -> bytes:
    try:
        return read_bounded(path, COMPARE_LIMIT)
    except FileReadError:
        return UNREADABLE


def read_tree(out: Path) -> dict[str, bytes]:
    """The files of a configuration directory on disk (relative path → content; an unreadable or
    oversized file reads as :data:`UNREADABLE`, so it counts as changed and is replaced)."""
    return {rel: _read(path) for rel, path in _on_disk(out).items()}


def _on_disk(out: Path) -> dict[str, Path]:
    if not out.is_dir():
        return {}
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file() and not p.is_symlink()}


def diff_tree(files: dict[str, RenderedFile], out: Path) -> TreeDiff:
    """Compare ``files`` with ``out``. Patches of files holding secrets are never produced."""
    result = TreeDiff()
    existing = _on_disk(out)
    for rel, f in files.items():
        path = existing.get(rel)
        if path is None:
            result.added.append(rel)
            continue
        old = _read(path)
        try:
            old_mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:  # gone since it was listed
            old_mode = 0
        if old != f.content:
            result.changed.append(rel)
            if f.mode != SECRET_MODE and old_mode != SECRET_MODE and old is not UNREADABLE:
                try:
                    a = old.decode("utf-8").splitlines(keepends=True)
                    b = f.content.decode("utf-8").splitlines(keepends=True)
                    result.patches[rel] = "".join(
                        difflib.unified_diff(a, b, f"{out.name}/{rel} (on disk)", f"{out.name}/{rel} (rendered)")
                    )
                except UnicodeDecodeError:
                    pass
        if old_mode != f.mode:
            result.mode_changed.append((rel, old_mode, f.mode))
    result.removed = [rel for rel in existing if rel not in files]
    return result
