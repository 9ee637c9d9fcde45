"""The queue from a batched search's controller to one population job (rlhp.inbox), on real
files: lines are taken whole, in order, once; garbage is skipped; the job knows when to stop."""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from rlhp.inbox import STALE_S, Inbox, group_size, parse


def test_take_returns_the_new_assignments_in_order_once(tmp_path: Path):
    inbox = Inbox(tmp_path / "populations" / "0")
    assert inbox.take() == []  # nothing assigned yet: no file
    for n in (3, 1, 2):
        inbox.put(n, tmp_path / str(n))
    assert inbox.take() == [(3, tmp_path / "3"), (1, tmp_path / "1"), (2, tmp_path / "2")]
    assert inbox.take() == []
    assert inbox.offset == inbox.path.stat().st_size
    inbox.put(7, tmp_path / "7")
    inbox.put(0, tmp_path / "0")
    assert inbox.take() == [(7, tmp_path / "7"), (0, tmp_path / "0")]


def test_a_half_written_line_is_taken_once_complete(tmp_path: Path):
    inbox = Inbox(tmp_path)
    inbox.put(1, Path("a"))
    with open(inbox.path, "ab") as f:
        f.write(b'{"trial": 5, "dir": "b"')  # the writer's rest is not on disk yet
    whole = inbox.path.stat().st_size - len(b'{"trial": 5, "dir": "b"')
    assert inbox.take() == [(1, Path("a"))]
    assert inbox.offset == whole
    assert inbox.take() == []
    with open(inbox.path, "ab") as f:
        f.write(b"}\n")
    assert inbox.take() == [(5, Path("b"))]


def test_garbage_lines_are_skipped_with_a_warning(tmp_path: Path, caplog):
    inbox = Inbox(tmp_path)
    with open(inbox.path, "ab") as f:
        f.write(b"not json at all\n\n")
    inbox.put(2, Path("two"))
    with open(inbox.path, "ab") as f:
        f.write(b'{"trial": null, "dir": "x"}\n{"trial": 4}\n')
    with caplog.at_level(logging.WARNING, logger="rlhp"):
        assert inbox.take() == [(2, Path("two"))]
    skipped = [r for r in caplog.records if "assigns no trial" in r.getMessage()]
    assert len(skipped) == 3  # the blank line is no line at all


def test_an_assignment_appended_onto_garbage_is_recovered(tmp_path: Path):
    inbox = Inbox(tmp_path)
    with open(inbox.path, "ab") as f:
        f.write(b'\x00\x00{"tri')  # a writer killed mid-line, or a disk hiccup
    inbox.put(9, Path("nine"))
    assert inbox.take() == [(9, Path("nine"))]


def test_parse():
    assert parse(b'{"trial": 3, "dir": "d/3"}') == (3, Path("d/3"))
    assert parse(b'\xff\xfe{"trial": "3", "dir": "d"}') == (3, Path("d"))
    assert parse(b'{"trial": 3, "dir": "a"}{"trial": 4, "dir": "b"}') == (4, Path("b"))
    for garbage in (b"\xff\xfe", b"[1, 2]", b'{"dir": "d"}', b'{"trial": 1}', b'{"trial": "x"'):
        assert parse(garbage) is None, garbage


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_open_while_lines_are_untaken_or_the_controller_beats(tmp_path: Path):
    inbox = Inbox(tmp_path / "job")
    assert not inbox.open  # no controller ever beat
    inbox.beat()
    assert inbox.open
    inbox.put(0, Path("0"))
    inbox.close()
    assert inbox.open  # closed, but a trial is still to take
    assert inbox.take() == [(0, Path("0"))]
    assert not inbox.open  # closed and drained, though the controller beat just now


def test_a_controller_silent_for_stale_s_is_gone(tmp_path: Path):
    inbox = Inbox(tmp_path)
    inbox.beat()
    age(tmp_path / "alive", STALE_S - 10)
    assert inbox.open
    age(tmp_path / "alive", STALE_S + 1)
    assert not inbox.open
    inbox.put(1, Path("1"))  # what it assigned before it died is still taken
    assert inbox.open
    inbox.take()
    assert not inbox.open
    inbox.beat()  # a controller run again beats in the same folder
    assert inbox.open


WRITER = """
import sys, time
from pathlib import Path
from rlhp.inbox import Inbox
inbox, w = Inbox(Path(sys.argv[1])), int(sys.argv[2])
while not (inbox.folder / "go").exists():  # the writers start together
    time.sleep(0.001)
for i in range(int(sys.argv[3])):
    inbox.put(1000 * w + i, Path(f"{w}/{i}/" + "x" * 2000))
"""


def test_concurrent_writers_never_tear_a_line(tmp_path: Path, caplog):
    """Processes putting long lines at once while the job takes: every line whole, each
    writer's in its order."""
    writers, lines = 4, 50
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(lines)])
        for w in range(writers)
    ]
    inbox, taken = Inbox(tmp_path), []
    (tmp_path / "go").touch()
    with caplog.at_level(logging.WARNING, logger="rlhp"):
        while any(p.poll() is None for p in procs):
            taken += inbox.take()
            time.sleep(0.002)
        taken += inbox.take()
    assert [p.returncode for p in procs] == [0] * writers
    assert not caplog.records
    for w in range(writers):
        mine = [(n, d) for n, d in taken if n // 1000 == w]
        assert [n for n, _ in mine] == [1000 * w + i for i in range(lines)]
        assert [d for _, d in mine] == [Path(f"{w}/{i}/" + "x" * 2000) for i in range(lines)]
    assert len(taken) == writers * lines


def test_group_size_shares_the_population_among_at_most_that_many_groups():
    assert group_size(4, 1) == 4 and group_size(4, 2) == 2 and group_size(5, 2) == 3
    assert group_size(2, 4) == 1  # a group holds at least one trial


def test_the_structure_groups_a_job_holds_are_set_before_it_starts(tmp_path):
    Inbox(tmp_path / "job").set_groups(3)
    assert Inbox(tmp_path / "job").groups == 3  # what the job reads at its start
