"""Re-train one rl-baselines3-zoo pick with SB3 PPO on one seed and score its final policy;
run by benchmarks/search_quality.py with the zoo venv's python (benchmarks/zoo_venv.sh).

    python _zoo_retrain.py '{"batch_size_pow": 8, ...}' SEED [--frames N] [--eval-episodes 10]
        [--env CartPole-v1]

The trial's params become SB3 kwargs through the zoo's own sampler (`sample_ppo_params` on an
optuna FixedTrial), over the zoo's defaults for the env (hyperparams/ppo.yml: n_envs, policy,
n_timesteps, normalize: VecNormalize as the zoo wraps it); the pick trains as the zoo's
objective trains a trial, then plays `eval_episodes` deterministic episodes on a fresh env, as
the zoo evaluates (EvalCallback, deterministic). Prints one JSON line: frames, eval (mean
return), wall_s.
"""

import argparse
import json
import time
from pathlib import Path

import optuna
import rl_zoo3
import torch
import yaml
from rl_zoo3.hyperparams_opt import sample_ppo_params
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("params", type=json.loads)
    p.add_argument("seed", type=int)
    p.add_argument("--frames", type=int, help="default: the zoo's n_timesteps for the env")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--env", default="CartPole-v1")
    args = p.parse_args()
    torch.set_num_threads(1)
    zoo = yaml.safe_load((Path(rl_zoo3.__file__).parent / "hyperparams" / "ppo.yml").read_text())
    defaults = zoo[args.env]
    frames = args.frames or int(defaults["n_timesteps"])
    env = make_vec_env(args.env, n_envs=defaults["n_envs"], seed=args.seed)
    trial = optuna.trial.FixedTrial(args.params)
    kwargs = sample_ppo_params(trial, env.action_space.n, defaults["n_envs"], {})
    if defaults.get("normalize"):  # as the zoo wraps it (VecNormalize with the trial's gamma)
        env = VecNormalize(env, gamma=kwargs.get("gamma", 0.99))
    model = PPO(defaults["policy"], env, seed=args.seed, device="cpu", verbose=0, **kwargs)
    start = time.perf_counter()
    model.learn(frames)
    wall = time.perf_counter() - start
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1_000_000)
    if isinstance(env, VecNormalize):  # the training statistics, frozen, raw rewards
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = env.obs_rms
    mean, _ = evaluate_policy(model, eval_env, args.eval_episodes, deterministic=True)
    print(json.dumps({"frames": model.num_timesteps, "eval": float(mean), "wall_s": wall}))


if __name__ == "__main__":
    main()
