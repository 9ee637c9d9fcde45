"""Bad values and bad sweep dirs through the real CLI (`python -m rlhp.train -m ...`): each is
refused with one `rlhp: error:` line before anything is launched (no study, no trial folder).

The refused searches end before training, so they run a few at a time in the background; one
real search checks that a population larger than n_trials is capped (in a sweep dir whose name
Hydra reads only in quotes, written as the error line of `unicode_dir` says).
"""

import shlex
import subprocess
import sys

import pytest
import torch

from ._cli import TINY, Background, cli_env, output, run_sweep, state, trial_dirs

LR = "algo.lr=tag(log, interval(1e-4, 1e-3))"
GAMMA = "algo.gamma=interval(0.9, 0.99)"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
HUGE = 10**9  # members no machine holds

# key: (sweep dir name, overrides, words the one error line names)
CASES = {
    "device_unknown": ("s", ["device=gpu", LR], ["device", "'gpu'"]),
    "device_cuda": ("s", ["device=cuda", LR], ["device=cuda", "no CUDA GPU"]),
    "hid_layers_empty": ("s", ["algo.hid_layers=[]", LR], ["algo.hid_layers", "non-empty"]),
    "hid_layers_zero": (
        "s",
        ["algo.hid_layers=choice([64], [0])"],
        ["algo.hid_layers", "[0]", "integers >= 1"],
    ),
    "ordered_strings": (
        "s",
        ["algo.training_epoch=ordered(a, b, c)"],
        ["algo.training_epoch", "'a'", "integer"],
    ),
    # the low end (what a probe trial composes) is fine: every value is checked
    "ordered_high_end": (
        "s",
        ["algo.training_epoch=ordered(4, 8, x)"],
        ["algo.training_epoch", "'x'", "integer"],
    ),
    "lr_string": (
        "s",
        [
            "algo.lr=abc",
            GAMMA,
            "hydra.sweeper.constraints=['algo.lr > 1e-3 and algo.gamma > 0.95']",
        ],
        ["algo.lr must be a number", "'abc'"],
    ),
    "lr_huge": ("s", ["algo.lr=1e6", GAMMA], ["algo.lr", "(0, 1]"]),
    "lr_huge_searched": ("s", ["algo.lr=tag(log, interval(1e-4, 10))"], ["algo.lr", "(0, 1]"]),
    "population_memory": (
        "s",
        [LR, f"hydra.sweeper.population={HUGE}", f"hydra.sweeper.n_trials={HUGE}"],
        [f"of up to {HUGE + HUGE // 2} members", "GiB", "hydra.sweeper.population"],
    ),
    "structure_groups_zero": (
        "s",
        [LR, "hydra.sweeper.population=2", "hydra.sweeper.structure_groups=0"],
        ["hydra.sweeper.structure_groups must be an integer >= 1", "0"],
    ),
    "file_dir": ("a_file", [LR], ["is a file"]),
    "long_dir": ("x" * 300, [LR], ["300 bytes", "255"]),
    "unicode_dir": ("café", [LR], ["quotes", "'hydra.sweep.dir=\""]),
}


def case(key: str):
    return pytest.param(key, marks=NO_CUDA) if key == "device_cuda" else key


@pytest.fixture(scope="module")
def refused(request, tmp_path_factory):
    """Start every case of CASES that the selected tests read."""
    mine = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    keys = {i.callspec.params.get("key") for i in mine if hasattr(i, "callspec")}
    bg = Background(workers=2, keys=keys)
    bg.base = tmp_path_factory.mktemp("refused")
    for key, (name, overrides, _) in CASES.items():
        (bg.base / key).mkdir()
        if key == "file_dir":
            (bg.base / key / name).write_text("mine\n")
        bg.start(key, bg.base / key / name, *TINY, *overrides)
    yield bg
    bg.close()


@pytest.mark.parametrize("key", [case(k) for k in CASES])
def test_bad_input_is_refused_in_one_line_before_launch(refused, key):
    proc = refused.result(key)
    folder = refused.base / key
    assert proc.returncode != 0, output(proc)
    assert "Traceback" not in proc.stdout + proc.stderr, output(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, output(proc)
    assert lines[0].startswith("rlhp: error: "), output(proc)
    for word in CASES[key][2]:
        assert word in lines[0], output(proc)
    made = sorted(p.name for p in folder.rglob("*"))
    assert made == (["a_file"] if key == "file_dir" else []), made
    if key == "file_dir":
        assert (folder / "a_file").read_text() == "mine\n"


def test_population_is_capped_at_n_trials_in_a_dir_written_as_the_error_says(tmp_path):
    name = "café ü"
    refusal = run_sweep(tmp_path / name, *TINY, LR, "hydra.sweeper.dry_run=true")
    written = refusal.stderr.split("write it as ")[-1].strip()
    (override,) = shlex.split(written)  # the override the shell passes
    assert override == f'hydra.sweep.dir="{tmp_path / name}"', output(refusal)

    sweep_dir = tmp_path / name
    settings = ["hydra.sweeper.n_trials=2", "hydra.sweeper.population=1000"]
    cmd = [sys.executable, "-m", "rlhp.train", "-m", override, *TINY, LR, *settings]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, output(proc)
    warned = [ln for ln in proc.stdout.splitlines() if "population=1000" in ln]
    assert len(warned) == 1 and "n_trials=2" in warned[0], output(proc)
    assert trial_dirs(sweep_dir) == [0, 1]
    assert state(sweep_dir).complete == 2
    jobs = sorted((sweep_dir / "populations").glob("*/train.log"))
    assert jobs, output(proc)
    for path in jobs:  # each population job caps its own hydra.sweeper.population alike
        assert "population job of 2 trials at once" in path.read_text(), path
