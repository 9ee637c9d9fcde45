"""Every `python -m rlhp...` command of slurm/README.md's bash blocks runs as written: searches
as dry runs (which ask SLURM nothing), validation up to the sweep dir it names (no SLURM needed)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "slurm" / "README.md"


def commands() -> list[str]:
    """The `python -m rlhp...` commands of the README's bash blocks, continued lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [" ".join(line.split()) for line in lines if line.strip().startswith("python -m rlhp")]


def test_the_readme_has_search_and_validation_commands():
    modules = [shlex.split(c)[2] for c in commands()]
    assert modules.count("rlhp.train") >= 2 and "rlhp.validate" in modules, modules


@pytest.mark.parametrize("command", commands())
def test_slurm_readme_command_runs_as_written(command, tmp_path):
    argv = [sys.executable, *shlex.split(command)[1:]]
    if argv[2] == "rlhp.train":
        argv += ["hydra.sweeper.dry_run=true", "hydra.sweeper.n_trials=2"]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if argv[2] == "rlhp.train":
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "rlhp: dry run" in proc.stdout, proc.stdout[-2000:]
    else:  # every argument taken; the example's sweep dir does not exist here
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert proc.stderr.strip().endswith("holds no study (study.journal not found)")
