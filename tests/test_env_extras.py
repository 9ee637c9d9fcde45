"""Env families are extras (`pip install 'rlhp[atari]'`, mujoco, box2d): without one, its envs
stop with one line naming it, before anything trains; the others still run. On the command line
a family is made missing by a module on PYTHONPATH that fails to import as an uninstalled one
does; in process by sys.modules (None: the import fails)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from sweep._cli import cli_env, output

from rlhp.config import check
from rlhp.env import EXTRAS, extra
from rlhp.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
FAMILIES = {"breakout": "atari", "halfcheetah": "mujoco", "lunar": "box2d"}


def error(env: str, family: str) -> str:
    return f"env={env} needs the {family} extra: pip install 'rlhp[{family}]'"


@pytest.mark.parametrize(
    ("env_id", "entry_point", "want"),
    [
        ("ALE/Breakout-v5", "", "atari"),
        ("HalfCheetah-v5", "gymnasium.envs.mujoco.half_cheetah_v5:HalfCheetahEnv", "mujoco"),
        ("LunarLander-v3", "gymnasium.envs.box2d.lunar_lander:LunarLander", "box2d"),
        ("CartPole-v1", "gymnasium.envs.classic_control.cartpole:CartPoleEnv", None),
    ],
)
def test_the_extra_an_env_needs(env_id, entry_point, want):
    assert extra(env_id, entry_point) == want


@pytest.mark.parametrize(("env", "family"), FAMILIES.items())
def test_the_config_check_names_the_missing_extra(env, family, monkeypatch):
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("config", [f"env={env}"])
    check(cfg)  # installed here
    monkeypatch.setitem(sys.modules, EXTRAS[family], None)
    with pytest.raises(ConfigError) as e:
        check(cfg)
    assert str(e.value) == error(env, family)


def without_extras(tmp_path: Path) -> dict[str, str]:
    """cli_env() in which no family's module can be imported."""
    root = tmp_path / "missing"
    for module in EXTRAS.values():
        (root / module).mkdir(parents=True)
        why = repr(f"No module named {module!r}")
        raise_it = f"raise ModuleNotFoundError({why}, name={module!r})\n"
        (root / module / "__init__.py").write_text(raise_it)
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def test_without_extras_the_cli_refuses_their_envs_in_one_line_and_trains_the_others(tmp_path):
    env = without_extras(tmp_path)

    def train(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "rlhp.train", *args]
        return subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    proc = train("env=breakout", f"hydra.run.dir={tmp_path / 'breakout'}")
    assert proc.returncode == 2, output(proc)
    assert proc.stderr.splitlines() == [f"rlhp: error: {error('breakout', 'atari')}"]
    sweep = tmp_path / "sweep"
    proc = train("-m", "+search=ppo_halfcheetah", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2 and error("halfcheetah", "mujoco") in proc.stderr, output(proc)
    assert not sweep.exists() or not any(p.name.isdigit() for p in sweep.iterdir())
    run = tmp_path / "cartpole"
    proc = train("env.max_frame=200", "log_frequency=100", f"hydra.run.dir={run}")
    assert proc.returncode == 0 and (run / "result.yaml").is_file(), output(proc)
