"""Claims: several processes (on one machine or on many, over a shared file system) fill one run folder
without computing a sample twice.

A claim is a file ``<run>/claims/00012.claim``, created with O_CREAT|O_EXCL (so exactly one process gets
it), holding its owner: pid, host (``io.HOST``: host name and pid namespace), start time and a random
token. The owner refreshes it (its mtime) while it works and deletes it when done. A claim is stale when
its owner is a process of this host that has ended, or when it was not refreshed for ``STALE_AFTER``
seconds (an owner on another host that died, or hangs); any process may then take it over. A claim with
a name instead of a number is a lock (``locked``): the end-of-run summary is made by one process at a time.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from alm.io import HOST, temporary_path

FOLDER = "claims"
STALE_AFTER = 600.0    # seconds without a refresh: longer than any step, inversion or sample save takes
REFRESH_EVERY = 30.0   # seconds between refreshes of a process's claims
UNWRITTEN_AFTER = 5.0  # seconds after which a claim without its owner is stale (its process died writing it)
_OPEN: set[str] = set()  # tokens of this process's open Claims: its other claims are orphans (an interrupted run)


def gone(pid: int, host: str) -> bool:
    """Whether the process ``pid`` of ``host`` (an ``io.HOST``) is known to have ended (only this host's can be
    checked)."""
    if host != HOST:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


def _stale(text: str, mtime: float) -> bool:
    age = time.time() - mtime
    if age > STALE_AFTER:
        return True
    try:
        owner = json.loads(text)
        pid, host, token = int(owner["pid"]), str(owner["host"]), str(owner["token"])
    except (ValueError, KeyError, TypeError):  # created, not yet written (a moment), or never (a killed process)
        return age > UNWRITTEN_AFTER
    mine = pid == os.getpid() and host == HOST
    return token not in _OPEN if mine else gone(pid, host)


def remove_if_stale(path: Path) -> bool:
    """Remove the claim at ``path`` if it is stale; whether it was (and is gone). Safe against another
    process doing the same: the claim is renamed away, then checked to be the one judged stale."""
    try:
        text, mtime = path.read_text(), path.stat().st_mtime
    except FileNotFoundError:
        return True
    if not _stale(text, mtime):
        return False
    grave = temporary_path(path)
    try:
        os.rename(path, grave)
    except FileNotFoundError:  # another process removed it first
        return True
    if grave.read_text() != text:  # a claim made after our look (another process took over first): give it back
        try:
            os.link(grave, path)
        except OSError:
            pass
        grave.unlink()
        return False
    grave.unlink()
    return True


class Claims:
    """This process's claims in one run folder. Use it as a context manager: leaving the ``with`` block
    releases them all (and until then, this process's other claims count as orphans)."""

    def __init__(self, run_dir: Path):
        self.folder = Path(run_dir) / FOLDER
        self.token = secrets.token_hex(8)
        self.me = json.dumps({"pid": os.getpid(), "host": HOST,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "token": self.token})
        self.held: set[Union[int, str]] = set()
        self._refreshed = time.monotonic()

    def __enter__(self) -> "Claims":
        _OPEN.add(self.token)
        return self

    def __exit__(self, *exc) -> None:
        self.release(*self.held)
        _OPEN.discard(self.token)

    def path(self, key: Union[int, str]) -> Path:
        return self.folder / (f"{key:05d}.claim" if isinstance(key, int) else f"{key}.claim")

    def take(self, key: Union[int, str]) -> bool:
        """Claim ``key`` (a sample index, or a lock's name); False while another live process holds it."""
        path = self.path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a stale claim is removed, then created anew (unless another process is quicker)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not remove_if_stale(path):
                    return False
                continue
            self.held.add(key)
            with os.fdopen(fd, "w") as f:
                f.write(self.me)
            return True
        return False

    def release(self, *keys: Union[int, str]) -> None:
        """Delete these claims (those still ours: a claim taken over after it went stale is the taker's)."""
        for key in keys:
            self.held.discard(key)
            try:
                if self.path(key).read_text() == self.me:
                    self.path(key).unlink()
            except FileNotFoundError:
                pass

    def refresh(self, *_: object) -> None:
        """Keep this process's claims fresh (at most every ``REFRESH_EVERY`` s; a per-step callback)."""
        if time.monotonic() - self._refreshed < REFRESH_EVERY:
            return
        self._refreshed = time.monotonic()
        for key in list(self.held):
            try:
                os.utime(self.path(key))
            except FileNotFoundError:
                pass


@contextmanager
def locked(run_dir: Path, name: str, poll: float = 0.2) -> Iterator[None]:
    """Hold the lock ``name`` of a run folder, waiting while another live process holds it."""
    with Claims(run_dir) as mine:
        while not mine.take(name):
            time.sleep(poll)
        yield


def remove_stale(run_dir: Path) -> None:
    """Remove the stale claims of a run folder (left by processes that were killed)."""
    folder = Path(run_dir) / FOLDER
    if folder.is_dir():
        for path in folder.glob("*.claim"):
            remove_if_stale(path)


def owner(path: Path) -> Optional[dict]:
    """The owner written in a claim file (pid, host, started, token), or None while it is being written."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
