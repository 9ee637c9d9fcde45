"""What a user sees in TensorBoard on a real search: `tensorboard --logdir SWEEP` in a subprocess,
read by a headless Chromium (Debian's package; playwright's locators pierce TensorBoard's shadow
DOM)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState
from playwright.sync_api import Page, sync_playwright
from sweep._cli import load_study, output, run_sweep

SEARCHED = {
    "algo.lr": "tag(log, interval(1e-4, 1e-3))",
    "algo.gamma": "interval(0.9, 0.999)",
    "algo.entropy_coef": "tag(log, interval(1e-4, 1e-2))",
    "algo.training_epoch": "int(interval(2, 6))",
    "algo.hid_layers": "choice([32,32], [64,64])",
}
SESSIONS = 2
PRESET = f"""\
# @package _global_
env:
  max_frame: 1024
log_frequency: 512
max_session: {SESSIONS}
hydra:
  sweeper:
    n_trials: 4
    max_concurrent: 2
    params:
""" + "".join(f"      {name}: {space}\n" for name, space in SEARCHED.items())

# the HParams table as shown: one list of cell texts per visible row, the header first
TABLE = """grid => [...grid.shadowRoot.querySelectorAll('thead tr, tbody tr')]
  .filter(tr => !tr.hidden)
  .map(tr => [...tr.querySelectorAll('th, td')].filter(td => !td.hidden).map(td => {
    const slot = td.querySelector('slot');
    return slot ? slot.assignedNodes().map(n => n.textContent).join('').trim() : '';
  }))"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A 4-trial search of 5 parameters, 2 sessions per trial (the sweep analyses itself)."""
    root = tmp_path_factory.mktemp("tb")
    (root / "conf" / "search").mkdir(parents=True)
    (root / "conf" / "search" / "tb_test.yaml").write_text(PRESET)
    sweep = root / "sweep"
    proc = run_sweep(sweep, "--config-dir", str(root / "conf"), "+search=tb_test", timeout=240)
    assert proc.returncode == 0, output(proc)
    return sweep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(url, data=data, timeout=5) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def tensorboard(sweep, tmp_path_factory) -> Iterator[str]:
    """`tensorboard --logdir SWEEP` on a free port; its URL once it has loaded every run."""
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--port", str(port)]
    log = tmp_path_factory.mktemp("tblog") / "tensorboard.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--reload_interval", "1"], stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    on_disk = {str(p.parent.relative_to(sweep)) for p in sweep.glob("**/events.out.tfevents.*")}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if set(get(f"{url}/data/runs")) == on_disk:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"TensorBoard did not load {sorted(on_disk)}: {log.read_text()[-3000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def install_chromium() -> str:
    """Debian's chromium, installed here when the tests run as root on Debian (as the SLURM
    tests install SLURM); else the test fails saying what is missing."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("no chromium on PATH: apt-get install chromium (see .ci/run)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def page(tensorboard) -> Iterator[Page]:
    chromium = shutil.which("chromium") or install_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser.new_page(viewport={"width": 1600, "height": 1000})
        browser.close()


def complete_trials(sweep: Path) -> dict[str, float]:
    trials = load_study(sweep).trials
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    return {str(t.number): t.value for t in trials}


def test_hparams_table_has_a_row_per_trial_and_shows_the_searched_parameters(
    sweep, tensorboard, page
):
    trials = complete_trials(sweep)
    page.goto(f"{tensorboard}/#hparams")
    grid = page.locator("tf-hparams-table-view vaadin-grid")
    grid.get_by_text("Trial ID").wait_for()
    page.wait_for_function(
        f"g => ({TABLE})(g).length > {len(trials)}", arg=grid.element_handle(), timeout=10_000
    )
    header, *rows = grid.evaluate(TABLE)
    assert header[:2] == ["Trial ID", "Show Metrics"], header
    # the columns shown: the searched parameters, then the metrics (objective first)
    assert set(header[2 : 2 + len(SEARCHED)]) == set(SEARCHED), header
    assert header[2 + len(SEARCHED) :] == ["objective", "final_total_reward_ma"], header
    # one row per trial, named by it, with its objective (the mean of its sessions)
    assert sorted(row[0] for row in rows) == sorted(trials), rows
    for row in rows:
        objective = float(row[header.index("objective")])
        assert objective == pytest.approx(trials[row[0]], rel=1e-3), row
    # the fixed config values are listed, for the user to tick, but not shown
    hparams = page.locator("tf-hparams-query-pane paper-checkbox")
    for name in SEARCHED:
        assert hparams.get_by_text(name, exact=True).get_attribute("aria-checked") == "true"
    for name in ("seed", "env.max_frame", "algo.lam"):
        assert name not in header
        assert hparams.get_by_text(name, exact=True).get_attribute("aria-checked") == "false"


def test_scalars_dashboard_has_one_run_per_trial_session(sweep, tensorboard, page):
    trials = complete_trials(sweep)
    page.goto(f"{tensorboard}/#scalars")
    runs = page.locator("tf-multi-checkbox .name-row .item-label-container")
    runs.first.wait_for()
    want = {f"{n}/session{s}" for n in trials for s in range(SESSIONS)}
    assert sorted(runs.all_inner_texts()) == sorted(want)
