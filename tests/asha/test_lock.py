import multiprocessing as mp
import os
import time

import pytest

from rlhp.asha import Coordinator, _lock
from rlhp.asha._lock import LOCKS, SymlinkLock, flock_risk

CTX = mp.get_context("fork")


def hold(kind, path, log, rounds):
    """Take the lock ``rounds`` times; write enter and exit marks while holding it."""
    lock = LOCKS[kind](path)
    for _ in range(rounds):
        with lock:
            with open(log, "a") as f:
                f.write(f"+{os.getpid()}\n")
            time.sleep(0.001)
            with open(log, "a") as f:
                f.write(f"-{os.getpid()}\n")


@pytest.mark.parametrize("kind", list(LOCKS))
def test_one_holder_at_a_time(tmp_path, kind):
    log = tmp_path / "log"
    procs = [CTX.Process(target=hold, args=(kind, tmp_path / "lock", log, 20)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 6
    marks = log.read_text().split()
    assert len(marks) == 6 * 20 * 2
    # every enter is followed by the exit of the same process: no overlap
    assert all(
        a == "+" + b[1:] and b[0] == "-" for a, b in zip(marks[::2], marks[1::2], strict=True)
    )
    assert not (tmp_path / "lock").is_symlink()


def test_stale_symlink_lock_is_broken(tmp_path, monkeypatch):
    monkeypatch.setattr(SymlinkLock, "stale_after", 0.2)
    path = tmp_path / "lock"
    os.symlink("deadhost:1:0", path)  # a holder that died while holding it
    with pytest.warns(UserWarning, match="broke the lock of deadhost:1:0"):
        with SymlinkLock(path):
            assert os.readlink(path) != "deadhost:1:0"
    assert not path.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing set aside is left


def test_a_holder_whose_lock_was_broken_leaves_the_new_one(tmp_path):
    path = tmp_path / "lock"
    lock = SymlinkLock(path)
    with pytest.warns(UserWarning, match="broken as stale"):
        with lock:
            os.unlink(path)
            os.symlink("other:2:0", path)  # another process broke it and took it
    assert os.readlink(path) == "other:2:0"


MOUNTS = r"""/dev/sda1 / ext4 rw,relatime 0 0
fs1 /gpfs/fs1 gpfs rw,relatime 0 0
10.0.0.1@o2ib:/scratch /scratch lustre rw,flock,lazystatfs 0 0
10.0.0.1@o2ib:/work /work lustre rw,localflock 0 0
10.0.0.1@o2ib:/proj /proj lustre rw,lazystatfs 0 0
server:/home /home nfs4 rw,vers=4.2,local_lock=none 0 0
server:/old /old nfs rw,vers=3,nolock 0 0
beegfs_nodev /mnt/beegfs beegfs rw,cfgFile=/etc/beegfs/beegfs-client.conf 0 0
fs2 /my\040gpfs gpfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/gpfs/fs1/user/sweep/asha", ["/gpfs/fs1", "GPFS"]),
        ("/work/sweep", ["/work", "Lustre", "localflock"]),
        ("/proj/sweep", ["/proj", "Lustre", "no -o flock"]),
        ("/old/sweep", ["/old", "NFS", "nolock"]),
        ("/mnt/beegfs/sweep", ["BeeGFS"]),
        ("/my gpfs/sweep", ["/my gpfs", "GPFS"]),  # /proc/mounts writes the space as \\040
    ],
)
def test_filesystems_with_node_local_or_no_flock(path, words):
    risk = flock_risk(path, MOUNTS)
    assert risk is not None
    for word in words:
        assert word in risk


@pytest.mark.parametrize(
    "path", ["/scratch/sweep", "/home/u/sweep", "/tmp/sweep", "/gpfs/fs10/sweep", "/my/sweep"]
)
def test_filesystems_with_a_shared_flock(path):
    assert flock_risk(path, MOUNTS) is None


@pytest.mark.parametrize(("lock", "warns"), [("flock", True), ("symlink", False)])
def test_coordinator_warns_when_flock_may_be_node_local(tmp_path, monkeypatch, caplog, lock, warns):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nfs1 {tmp_path} gpfs rw 0 0\n")
    monkeypatch.setattr(_lock, "MOUNTS", mounts)
    Coordinator(tmp_path / "asha", grace_period=1, reduction_factor=2, max_t=8, lock=lock)
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if warns:
        assert len(lines) == 1
        assert "GPFS" in lines[0] and "++meta.search_scheduler.lock=symlink" in lines[0]
    else:
        assert lines == []
