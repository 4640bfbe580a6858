"""The recording files as the orchestrator sees them (``orchestrator.recording.local_files``): the directory made
0700, each file made 0600 and measured, and retention -- the old files deleted in the background.

FreeSWITCH creates a recording with its own umask (``mod_sndfile`` opens it with ``SWITCH_FPROT_OS_DEFAULT``: 0666
less the umask, so usually 0644) and ``switch_dir_make_recursive`` makes missing directories 0755: the directory is
made 0700 here before the first call, so no other user can open a file in the moment before it is made 0600
(on ``RECORD_START``, and again on ``RECORD_STOP``). Start FreeSWITCH with ``umask 077`` to have 0600 from the
first byte (docs/operations.md#call-recording). Nothing here follows a symbolic link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.calls.recording import expired
from orchestrator.config.model import RecordingSettings

log = logging.getLogger("sipagent.recording")

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


class RecordingFiles:
    """One deployment's recording directory."""

    def __init__(
        self, settings: RecordingSettings, clock: Callable[[], float] = time.time, interval: float = 3600.0
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.interval = interval
        self.deleted = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Whether there is a directory this process may look after."""
        return self.settings.directory is not None and self.settings.local_files

    def prepare(self) -> None:
        """Create the directory 0700 if it is missing (FreeSWITCH would make it 0755)."""
        if not self.active:
            return
        assert self.settings.directory is not None
        directory = Path(self.settings.directory)
        try:
            directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            log.error("recording directory %s cannot be created: %s", directory, exc)

    def _inside(self, path: str) -> bool:
        directory = self.settings.directory
        return directory is not None and os.path.dirname(path) == directory.rstrip("/")

    def secure(self, path: str) -> int | None:
        """Make ``path`` (a recording in the directory) 0600; returns its size (None: not there, not a file)."""
        if not self.active or not self._inside(path):
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            log.warning("recording %s cannot be opened to set its mode: %s", path, exc)
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                log.warning("recording %s is not a regular file: left alone", path)
                return None
            if stat.S_IMODE(info.st_mode) != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
            return info.st_size
        except OSError as exc:
            log.warning("recording %s: cannot set mode 0600: %s", path, exc)
            return None
        finally:
            os.close(fd)

    def sweep(self) -> list[str]:
        """Delete the recordings older than ``retention_days`` (by modification time, at ``clock()``)."""
        days = self.settings.retention_days
        if not self.active or days is None:
            return []
        assert self.settings.directory is not None
        entries: list[tuple[str, float]] = []
        try:
            with os.scandir(self.settings.directory) as it:
                for entry in it:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            entries.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
                    except OSError:
                        continue
        except OSError as exc:
            log.warning("recording retention: %s cannot be read: %s", self.settings.directory, exc)
            return []
        deleted = []
        for name in expired(entries, self.clock(), days):
            try:
                os.unlink(os.path.join(self.settings.directory, name))
                deleted.append(name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("recording retention: cannot delete %s: %s", name, exc)
        if deleted:
            self.deleted += len(deleted)
            log.info("recording retention: %d recording(s) older than %d days deleted", len(deleted), days)
        return deleted

    def start(self) -> None:
        """Prepare the directory; sweep now and every ``interval`` seconds (when a retention is set)."""
        self.prepare()
        if self.active and self.settings.retention_days is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="recording-retention")

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:  # never let a sweep end the loop
                log.exception("recording retention sweep failed")
            await asyncio.sleep(self.interval)
