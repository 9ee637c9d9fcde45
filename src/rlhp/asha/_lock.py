"""The two inter-process locks of the coordinator, and when ``flock`` cannot be trusted.

``flock``: a blocking ``fcntl.flock``; waiters queue in the kernel and the OS releases the lock
when its holder dies (``filelock`` polls a non-blocking one instead, every 50 ms by default,
which made 8 concurrent reporters wait up to 1.4 s). Across nodes it is only as good as the
filesystem's lock support.
``symlink``: an atomically created symbolic link (as Optuna's ``JournalFileSymlinkLock``), which
needs nothing from the filesystem but atomic ``symlink``; a lock held unchanged for
``stale_after`` seconds is taken to be a dead holder's and broken.
"""

import fcntl
import os
import random
import re
import socket
import time
import uuid
import warnings
from pathlib import Path


class Flock:
    """Exclusive ``flock`` on ``path``, taken with a blocking call."""

    filename = "lock"  # filelock's name for it in earlier versions: both lock the same file

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:  # e.g. ENOSYS on Lustre mounted without -o flock
            os.close(fd)
            raise OSError(
                e.errno, f"{self.path}: flock failed ({e.strerror}); use the symlink lock"
            ) from None
        self._fd = fd

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # closing the only descriptor releases the lock


class SymlinkLock:
    """A symbolic link at ``path`` whose target names the holder (host, pid, a random id)."""

    filename = "lock.symlink"
    stale_after = 30.0  # seconds a lock may stay with one holder before it is broken

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

    def __enter__(self) -> None:
        delay, seen, since = 0.0005, None, time.monotonic()
        while True:
            try:
                os.symlink(self._token, self.path)
                return
            except FileExistsError:
                pass
            holder = _readlink(self.path)
            if holder != seen:
                seen, since = holder, time.monotonic()
            elif holder is not None and time.monotonic() - since > self.stale_after:
                self._break(holder)
                continue
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(2 * delay, 0.005)

    def __exit__(self, *exc: object) -> None:
        if _readlink(self.path) == self._token:
            os.unlink(self.path)
        else:
            warnings.warn(f"{self.path} was broken as stale while held here", stacklevel=2)

    def _break(self, holder: str) -> None:
        """Set aside the lock of ``holder``; one put back if another waiter broke it first."""
        aside = self.path.with_name(f"{self.path.name}.stale.{self._token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _readlink(aside) == holder:
            warnings.warn(f"{self.path}: broke the lock of {holder} (stale)", stacklevel=3)
        else:  # a live lock taken after the stale one was broken: put it back unless replaced
            try:
                os.link(aside, self.path, follow_symlinks=False)
            except FileExistsError:
                pass
        os.unlink(aside)


LOCKS = {"flock": Flock, "symlink": SymlinkLock}
MOUNTS = Path("/proc/mounts")


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except FileNotFoundError:
        return None


def flock_risk(path: str | os.PathLike[str], mounts: str) -> str | None:
    """Why ``flock`` under ``path`` may not exclude processes on other nodes, or None.

    ``mounts`` is the text of ``/proc/mounts``; the mount point is the longest that holds
    ``path`` (resolved).
    """
    target = os.path.realpath(path)
    best = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])  # \040: space
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best[0])):
            best = (point, fields[2], set(fields[3].split(",")))
    if best is None:
        return None
    point, fstype, options = best
    if fstype == "lustre" and "flock" not in options:
        how = "node-local (localflock)" if "localflock" in options else "absent (no -o flock)"
        return f"{point} is Lustre with flock {how}"
    if fstype == "gpfs":
        return f"{point} is GPFS (IBM Storage Scale), whose flock may be node-local"
    if fstype == "beegfs":
        return f"{point} is BeeGFS, whose flock is node-local unless tuneUseGlobalFileLocks is set"
    if fstype.startswith("nfs") and (
        "nolock" in options or any(o in options for o in ("local_lock=flock", "local_lock=all"))
    ):
        return f"{point} is NFS mounted with node-local locks (nolock or local_lock)"
    return None


def lock_warning(path: str | os.PathLike[str]) -> str | None:
    """A one-line warning when the ``flock`` lock in ``path`` may be node-local, else None."""
    try:
        mounts = MOUNTS.read_text()
    except OSError:
        return None
    risk = flock_risk(path, mounts)
    if risk is None:
        return None
    return (
        f"ASHA's flock lock may not work across nodes: {risk}; with trials on several nodes "
        "set ++meta.search_scheduler.lock=symlink"
    )
