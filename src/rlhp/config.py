"""Checks of a composed configuration, shared by the train entry point and the sweeper."""

from types import SimpleNamespace

from omegaconf import DictConfig, OmegaConf

from rlhp.asha import scheduler_settings
from rlhp.errors import ConfigError


def check(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for a configuration that cannot run."""
    import gymnasium as gym

    from rlhp import algo
    from rlhp.env import check_env_id

    if missing := sorted(OmegaConf.missing_keys(cfg)):
        raise ConfigError(f"missing config value(s): {', '.join(missing)}")
    if cfg.env.max_frame <= 0:
        raise ConfigError(f"env.max_frame must be positive, got {cfg.env.max_frame}")
    if cfg.log_frequency <= 0 or cfg.max_session <= 0 or cfg.env.num_envs <= 0:
        raise ConfigError("log_frequency, max_session and env.num_envs must be positive")
    if cfg.objective not in ("final", "auc", "eval"):
        raise ConfigError(f"objective must be final, auc or eval, got {cfg.objective!r}")
    if cfg.eval_episodes < 0 or (cfg.objective == "eval" and cfg.eval_episodes == 0):
        raise ConfigError(
            f"eval_episodes must be >= 0, and > 0 for objective eval; got {cfg.eval_episodes}"
        )
    if scheduler := OmegaConf.select(cfg, "meta.search_scheduler"):
        try:
            scheduler_settings(OmegaConf.to_container(scheduler), cfg.env.max_frame)
        except ValueError as e:
            raise ConfigError(f"meta.search_scheduler: {e}") from None
    algo.check(cfg.algo.name)
    check_env_id(cfg.env.id)
    env = gym.make(cfg.env.id)
    algo.check(cfg.algo.name, env.action_space)
    env.close()


def plain(cfg: DictConfig) -> SimpleNamespace:
    """The hyperparameters as plain attributes: DictConfig lookups cost microseconds a step."""
    return SimpleNamespace(**OmegaConf.to_container(cfg, resolve=True))
