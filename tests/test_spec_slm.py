"""SLM-Lab specs keep their meaning in rlhp (issue 23): specs written in SLM-Lab's format with
spec variables, envs with no rlhp group, DQN's training_batch_iter and activations rlhp lacked,
run end to end: import, dry run, a tiny search, analyze."""

import json
import re
from pathlib import Path

import pandas as pd
import yaml
from sweep._cli import output, run_cli, run_sweep

SPECS = Path(__file__).parent / "data" / "specs" / "variables"


def spec_cli(*args: object, cwd: Path):
    return run_cli("spec", *args, cwd=cwd, timeout=120)


def command(proc) -> list[str]:
    """The train command `rlhp.spec import` printed for each preset it wrote."""
    return re.findall(r"search it with (.+)", proc.stdout)


def test_ppo_spec_keeps_constant_lr_and_clip_eps_on_an_env_without_a_group(tmp_path):
    proc = spec_cli("import", SPECS / "ppo_bipedalwalker.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    preset = tmp_path / "conf" / "search" / "ppo_bipedalwalker.yaml"
    text = preset.read_text()
    data = yaml.safe_load(text)
    (train,) = command(proc)
    conf = tmp_path / "conf"
    assert train == f"python -m rlhp.train -m --config-dir {conf} +search={preset.stem}"
    assert f"#   {train}\n" in text  # the header names the preset written
    assert {"override /env": "lunar"} in data["defaults"]  # BipedalWalker: Box2D, as LunarLander
    assert data["env"]["id"] == "BipedalWalker-v3"
    algo = data["algo"]
    assert algo["clip_eps_anneal"] is False and algo["lr_anneal"] is False
    assert algo["clip_eps"] == 0.2 and "hid_layers_activation" not in algo  # searched
    # the rlhp defaults the spec leaves as they are, named; nothing rlhp does too is "dropped"
    assert "rlhp defaults that still apply: algo.normalize_advantage=true" in proc.stderr
    dropped = [ln for ln in proc.stderr.splitlines() if "not carried over" in ln]
    assert dropped == ["rlhp.spec: not carried over: meta.eval_frequency: 10000"]
    params = data["hydra"]["sweeper"]["params"]
    assert params["algo.hid_layers_activation"] == 'choice("selu", "gelu", "relu")'

    sweep = tmp_path / "multirun" / "ppo_bipedalwalker"
    tiny = ["env.max_frame=512", "log_frequency=256", "algo.time_horizon=32", "max_session=1"]
    proc = run_sweep(
        sweep,
        "--config-dir",
        tmp_path / "conf",
        "+search=ppo_bipedalwalker",
        *tiny,
        "algo.minibatch_size=64",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.max_concurrent=2",
        timeout=600,
    )
    assert proc.returncode == 0, output(proc)
    df = pd.read_csv(sweep / "experiment_df.csv")
    assert set(df["state"]) == {"complete"}
    for trial in df["trial"]:  # constant lr, as the spec has it: the trial's own value
        metrics = pd.read_csv(sweep / str(trial) / "metrics.csv")
        lr = df.loc[df["trial"] == trial, "algo.lr"].item()
        assert len(metrics) == 2 and (metrics["lr"] == lr).all()
    slm = pd.read_csv(sweep / "info" / "ppo_bipedalwalker_experiment_df.csv")
    assert list(slm["agent.algorithm.lam"]) == list(slm["algo.lam"])
    assert list(slm["agent.net.actor_optim_spec.lr"]) == list(df["algo.lr"])
    assert set(slm["agent.net.hid_layers_activation"]) <= {"selu", "gelu", "relu"}


def test_dqn_atari_spec_variables_and_training_batch_iter(tmp_path):
    spec = SPECS / "dqn_atari.json"
    proc = spec_cli("import", spec, cwd=tmp_path)  # spec_params: one preset per env, as SLM-Lab
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.stem for p in (tmp_path / "conf" / "search").glob("*.yaml"))
    assert names == ["dqn_atari_BreakoutNoFrameskip-v4", "dqn_atari_QbertNoFrameskip-v4"]
    breakout = yaml.safe_load((tmp_path / "conf/search" / f"{names[0]}.yaml").read_text())
    assert {"override /env": "breakout"} in breakout["defaults"] and "id" not in breakout["env"]
    assert breakout["env"]["sticky_action"] == 0.0  # v4 NoFrameskip ids have no sticky actions

    out = tmp_path / "conf" / "search" / "qbert.yaml"
    proc = spec_cli("import", spec, "--set", "env=ALE/Qbert-v5", "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "env ALE/Qbert-v5 has no rlhp env group: imported as env=breakout" in proc.stderr
    data = yaml.safe_load(out.read_text())
    assert {"override /env": "breakout"} in data["defaults"]
    assert data["env"]["id"] == "ALE/Qbert-v5" and "sticky_action" not in data["env"]
    algo = data["algo"]
    assert algo["tau"] == 1.0 and algo["lr_anneal"] is False and algo["hid_layers"] == [256]
    assert data["env"]["reward_clip"] is True  # SLM-Lab's reward_scale "sign"
    # training_batch_iter x training_iter (1) gradient steps per training step: rlhp's one
    assert data["hydra"]["sweeper"]["params"]["algo.training_iter"] == "choice(4, 8, 16)"
    dropped = [ln for ln in proc.stderr.splitlines() if "not carried over" in ln]
    assert dropped == ["rlhp.spec: not carried over: meta.eval_frequency: 10000"]
    for listed in ("SmoothL1Loss", "Adam", "epsilon_greedy", "linear_decay", "training_batch_iter"):
        assert listed not in proc.stderr

    proc = run_sweep(
        tmp_path / "dry",
        "--config-dir",
        tmp_path / "conf",
        "+search=qbert",
        "hydra.sweeper.dry_run=true",
        "hydra.sweeper.n_trials=4",
    )
    assert proc.returncode == 0, output(proc)
    trials = [ln for ln in proc.stdout.splitlines() if ln.startswith("trial ")]
    assert len(trials) == 4
    for line in trials:
        assert re.search(r"algo\.training_iter=(4|8|16)\b", line), line
    proc = run_cli(
        "train", "--config-dir", tmp_path / "conf", "+search=qbert", "--cfg", "job", cwd=tmp_path
    )
    assert proc.returncode == 0, output(proc)
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["env"]["id"] == "ALE/Qbert-v5" and cfg["env"]["type"] == "atari"


def test_a_spec_variable_without_a_value_is_one_error_line(tmp_path):
    spec = json.loads((SPECS / "dqn_atari.json").read_text())
    del spec["dqn_atari"]["spec_params"]
    path = tmp_path / "vars.json"
    path.write_text(json.dumps(spec))
    proc = spec_cli("import", path, cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(
        "rlhp: error: spec 'dqn_atari' uses the spec variable(s) env: give each a value with "
        "--set, e.g. --set env=VALUE"
    )
    assert not (tmp_path / "conf").exists()
