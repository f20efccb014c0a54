"""The spend spool: every row is appended to a file on disk the moment its call ends.

A write to the page cache survives the process being killed, so a row is never only in memory.
Segments: `<pid>-<n>.open` (being written, flock-ed by its writer) becomes `.ready` when
rotated; the writer (spend/writer.py) moves ready segments to the store and deletes them.
An `.open` segment nobody holds the lock of belongs to a process that died: it is ready too.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("llm_proxy")


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._fd = -1
        self._path: Path | None = None
        self._written = 0  # bytes in the open segment
        self._seq = 0
        self._fresh: set[str] = set()  # segments rotated here and not yet tried
        self.bytes = 0
        self.recount()

    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def append(self, row: dict[str, Any]) -> None:
        line = orjson.dumps(row) + b"\n"
        if self._fd < 0:
            self._open()
        os.write(self._fd, line)  # O_APPEND: one write, one whole line
        self._written += len(line)
        self.bytes += len(line)

    def _open(self) -> None:
        self._seq += 1
        name = f"{os.getpid()}-{time.time_ns()}-{self._seq}"
        # Locked before it is visible as `.open`: nobody can take it for a dead writer's.
        tmp = self.dir / f"{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = tmp.with_suffix(".open")
        tmp.rename(path)
        self._fd, self._path, self._written = fd, path, 0

    def rotate(self) -> None:
        """Close the open segment (if it holds rows) and mark it ready."""
        if self._fd < 0 or self._written == 0 or self._path is None:
            return
        path, fd = self._path, self._fd
        self._fd, self._path = -1, None
        os.fsync(fd)
        ready = path.with_suffix(".ready")
        path.rename(ready)
        self._fresh.add(ready.name)
        os.close(fd)  # after the rename: nobody else may take it for an orphan meanwhile

    def ready(self) -> list[Path]:
        """Ready segments, oldest first, orphans of dead processes included."""
        for p in self.dir.glob("*.open"):
            if p == self._path:
                continue
            with contextlib.suppress(OSError):
                fd = os.open(p, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its writer is alive
                finally:
                    os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    p.rename(p.with_suffix(".ready"))
        return sorted(self.dir.glob("*.ready"), key=_order)

    def claim(self, path: Path) -> int | None:
        """A locked descriptor of a ready segment, or None when another process is storing it
        (or already did). The lock dies with its holder, so a crash leaves it to the next."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        if not path.exists():  # stored and deleted while we waited for the lock
            os.close(fd)
            return None
        return fd

    def first_try(self, path: Path) -> bool:
        """True once for a segment this process rotated: its rows were never sent anywhere."""
        if path.name in self._fresh:
            self._fresh.discard(path.name)
            return True
        return False

    def done(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def recount(self) -> None:
        """What waits on disk, every worker's included (they share the directory)."""
        total = 0
        with os.scandir(self.dir) as it:
            for entry in it:
                if entry.name.endswith((".ready", ".open")):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        self.bytes = total

    def close(self) -> None:
        self.rotate()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _order(p: Path) -> tuple[int, str]:
    parts = p.stem.split("-")
    try:
        return int(parts[1]), p.name
    except (IndexError, ValueError):
        return 0, p.name


def read_segment(path: Path, fd: int | None = None) -> list[dict[str, Any]]:
    """The rows of a segment; a torn last line (a crash mid-write) is skipped."""
    if fd is None:
        data = path.read_bytes()
    else:
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    rows = []
    for n, line in enumerate(data.splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.warning("unreadable spend spool line skipped", extra={"file": path.name, "line": n})
    return rows
