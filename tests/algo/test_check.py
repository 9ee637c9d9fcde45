"""algo.check: what each algorithm cannot train is refused there, in one line, before launch."""

import gymnasium as gym
import pytest
from omegaconf import OmegaConf

from rlhp import algo
from rlhp.errors import ConfigError

BOX, DISCRETE = gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2)


@pytest.mark.parametrize(
    "name, space, cfg, words",
    [
        ("sac", BOX, {"env": {"net": "cnn"}, "algo": {}}, "env.net=mlp"),
        ("a2c", DISCRETE, {"env": {"net": "mlp"}, "algo": {"optimizer": "sgd"}}, "'sgd'"),
    ],
)
def test_settings_an_algorithm_cannot_train_are_refused(name, space, cfg, words):
    with pytest.raises(ConfigError, match=words) as e:
        algo.check(name, space, OmegaConf.create(cfg))
    assert "\n" not in str(e.value)


def test_settings_it_can_train_pass():
    algo.check("sac", BOX, OmegaConf.create({"env": {"net": "mlp"}, "algo": {}}))
    for optimizer in algo.OPTIMIZERS:
        cfg = {"env": {"net": "mlp"}, "algo": {"optimizer": optimizer}}
        algo.check("a2c", DISCRETE, OmegaConf.create(cfg))


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["algo=sac", "env=pendulum", "env.net=cnn"], "algo sac takes vector observations"),
        (["algo=a2c", "algo.optimizer=sgd"], "algo.optimizer must be adam or rmsprop"),
    ],
)
def test_the_cli_refuses_them_in_one_line_before_training(overrides, words, rlhp_cli, tmp_path):
    proc = rlhp_cli(*overrides, run_dir=tmp_path / "run", timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlhp: error: "), proc.stderr
    assert words in lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
