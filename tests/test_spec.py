"""python -m rlhp.spec: SLM-Lab specs imported as presets (round trip through the real dry run),
and stage 2 narrowed from a real search."""

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sweep._cli import output, run_cli, run_sweep

from rlhp.record import decode
from rlhp.sweep import _space

SPECS = Path(__file__).parent / "data" / "specs"


def spec_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli("spec", *args, cwd=cwd, timeout=120)


def dry_run(conf: Path, name: str, n: int) -> list[dict[str, str]]:
    """The sampled trials the real sweep CLI prints for a preset, as {key: value} each."""
    dry = [f"+search={name}", "hydra.sweeper.dry_run=true", f"hydra.sweeper.n_trials={n}"]
    proc = run_sweep(conf.parent / "dry_run", "--config-dir", str(conf), *dry, timeout=300)
    assert proc.returncode == 0, output(proc)
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"trial \d+: ", ln)]
    return [dict(kv.split("=", 1) for kv in ln.split(": ", 1)[1].split()) for ln in lines]


def slm_search(spec: dict) -> dict[str, tuple[str, list]]:
    """The spec's search block as {dotted SLM path: (space, args)}, flat or nested."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, list):
            node = node[0]
        for key, value in node.items():
            if "__" in key:
                stem, kind = key.rsplit("__", 1)
                out[prefix + stem] = (kind, value)
            else:
                walk(value, f"{prefix}{key}.")

    walk(spec["search"], "")
    return out


# the rlhp name of each SLM-Lab path the test specs search
RLHP = {
    "agent.algorithm.gamma": "algo.gamma",
    "agent.algorithm.lam": "algo.lam",
    "agent.algorithm.clip_eps_spec.start_val": "algo.clip_eps",
    "agent.algorithm.entropy_coef_spec.start_val": "algo.entropy_coef",
    "agent.algorithm.time_horizon": "algo.time_horizon",
    "agent.algorithm.training_epoch": "algo.training_epoch",
    "agent.algorithm.training_iter": "algo.training_iter",
    "agent.algorithm.explore_var_spec.end_step": "algo.explore_var_spec.end_step",
    "agent.memory.batch_size": "algo.batch_size",
    "agent.net.hid_layers": "algo.hid_layers",
    "agent.net.hid_layers_activation": "algo.hid_layers_activation",
    "agent.net.optim_spec.lr": "algo.lr",
    "agent.net.actor_optim_spec.lr": "algo.lr",
    "agent.net.polyak_coef": "algo.tau",
}


@pytest.mark.parametrize("file", sorted(p.name for p in SPECS.glob("*.json")))
def test_import_round_trip_samples_the_specs_space(file, tmp_path):
    ((spec_name, spec),) = json.loads((SPECS / file).read_text()).items()
    conf = tmp_path / "conf"
    proc = spec_cli("import", str(SPECS / file), cwd=tmp_path)  # default: conf/search/NAME.yaml
    assert proc.returncode == 0, proc.stderr
    preset = conf / "search" / f"{spec_name}.yaml"
    data = yaml.safe_load(preset.read_text())
    assert data["hydra"]["sweeper"]["n_trials"] == spec["meta"]["max_trial"]
    assert data["max_session"] == spec["meta"]["max_session"]
    if "search_scheduler" in spec["meta"]:
        assert data["meta"]["search_scheduler"] == spec["meta"]["search_scheduler"]
    # every searched SLM path is a dimension under its rlhp name, or listed as not carried over
    search = slm_search(spec)
    listed = {p for p in search if f"search.{p}" in proc.stderr}
    wanted = {RLHP[p]: v for p, v in search.items() if p not in listed}
    for path in listed:  # not dropped in silence
        assert path in preset.read_text()
    assert set(search) - set(RLHP) <= listed and len(listed) <= 1
    space, fixed = _space.parse(data["hydra"]["sweeper"]["params"], [])
    assert set(space) == set(wanted) and not fixed
    # DQN: rlhp's training_iter is SLM-Lab's training_iter x training_batch_iter
    agent = spec["agent"][0] if isinstance(spec["agent"], list) else spec["agent"]
    scale = {"algo.training_iter": agent["algorithm"].get("training_batch_iter", 1)}
    if (f := scale["algo.training_iter"]) > 1:
        wanted["algo.training_iter"] = ("randint", [f * a for a in wanted["algo.training_iter"][1]])
    for key, (kind, args) in wanted.items():
        dist = space[key]
        if kind in ("choice", "grid_search"):
            assert isinstance(dist, CategoricalDistribution) and len(dist.choices) == len(args)
        elif kind == "randint":  # SLM-Lab's upper end is excluded
            step = scale.get(key, 1)
            assert isinstance(dist, IntDistribution) and (dist.low, dist.high, dist.step) == (
                args[0],
                args[1] - step,
                step,
            )
        else:
            assert isinstance(dist, FloatDistribution) and (dist.low, dist.high) == tuple(args)
            assert dist.log == (kind == "loguniform")
    if all(kind == "grid_search" for kind, _ in search.values()):
        assert {"override /hydra/sweeper/sampler": "grid"} in data["defaults"]
    # the dry run of the imported preset samples inside the spec's ranges
    trials = dry_run(conf, spec_name, 12)
    assert len(trials) == min(12, data["hydra"]["sweeper"]["n_trials"])
    for trial in trials:
        assert set(trial) == set(wanted)
        for key, (kind, args) in wanted.items():
            value = yaml.safe_load(trial[key])
            if kind in ("choice", "grid_search"):
                assert value in args
            elif kind == "randint":
                assert isinstance(value, int) and args[0] <= value < args[1]
                assert value % scale.get(key, 1) == 0
            else:
                assert args[0] <= value <= args[1]


def test_import_carries_fixed_fields_and_lists_the_rest(tmp_path):
    out = tmp_path / "dqn.yaml"
    proc = spec_cli("import", str(SPECS / "dqn_cartpole_search.json"), "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(out.read_text())
    assert data["defaults"][:2] == [{"override /algo": "dqn"}, {"override /env": "cartpole"}]
    algo = data["algo"]
    assert algo["memory_size"] == 10000 and algo["learning_starts"] == 32
    # boltzmann's explore_var_spec is a temperature, rlhp's an epsilon
    assert "explore_var_spec" not in algo and algo["hid_layers_activation"] == "selu"
    assert "search.agent.algorithm.explore_var_spec.end_step__randint" in proc.stderr
    for listed in ("explore_var_spec.start_val", "action_policy", "MSELoss"):
        assert listed in proc.stderr and listed in out.read_text()
    for done in ("training_batch_iter", "update_type", "use_cer", "selu"):  # rlhp has them
        assert done not in proc.stderr
    assert "algo.explore_var_spec.end_step" not in data["hydra"]["sweeper"]["params"]
    assert data["meta"]["search_resources"]["cpu"] == 1


def test_import_bad_input_is_one_error_line(tmp_path):
    specs = json.loads((SPECS / "dqn_cartpole_search.json").read_text())
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"a": specs["dqn_boltzmann_cartpole"], "b": {}}))
    out = tmp_path / "x.yaml"
    out.write_text("keep")
    for args, why in [
        (["import", str(two)], "holds 2 specs"),
        (["import", str(two), "c"], "no spec 'c'"),
        (["import", str(SPECS / "dqn_cartpole_search.json"), "-o", str(out)], "exists"),
        (["import", str(tmp_path / "missing.json")], "cannot read"),
    ]:
        proc = spec_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith("rlhp: error:"), proc.stderr
        assert why in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert out.read_text() == "keep"


def test_narrow_spans_the_top_trials_of_a_real_search(tmp_path):
    sweep = tmp_path / "stage1"
    proc = run_sweep(
        sweep,
        "+search=ppo_cartpole",
        "env.max_frame=1024",
        "log_frequency=256",
        "meta.search_scheduler.grace_period=256",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.max_concurrent=2",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=1",
        "algo.val_loss_coef=ordered(0.25, 0.5, 1.0)",
        timeout=600,
    )
    assert proc.returncode == 0, output(proc)
    out = tmp_path / "conf" / "search" / "stage2.yaml"
    proc = spec_cli("narrow", str(sweep), "--top_k", "3", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(out.read_text())
    df = pd.read_csv(sweep / "experiment_df.csv")
    top = df[df["state"] == "complete"].head(3)
    assert len(top) >= 2
    assert data["meta"]["search_scheduler"] is None and data["max_session"] == 4
    assert data["hydra"]["sweep"]["dir"] == "multirun/stage2"  # not an ordered dimension's name
    assert "algo.val_loss_coef" in data["hydra"]["sweeper"]["params"]
    assert data["env"]["max_frame"] == 1024 and "gamma" not in data["algo"]
    stage1 = _space.parse(
        yaml.safe_load((Path(__file__).parents[1] / "conf/search/ppo_cartpole.yaml").read_text())[
            "hydra"
        ]["sweeper"]["params"],
        [],
    )[0]
    space, fixed = _space.parse(data["hydra"]["sweeper"]["params"], [])
    for name, dist in stage1.items():
        values = list(top[name])
        if name in space and hasattr(dist, "low"):
            narrow = space[name]
            assert dist.low <= narrow.low <= min(values) <= max(values) <= narrow.high <= dist.high
            assert narrow.log == dist.log
            assert narrow.high - narrow.low <= dist.high - dist.low
        elif name in space:  # categorical: the choices the top trials used
            got = sorted(str(decode(c)) for c in space[name].choices)
            assert got == sorted({str(yaml.safe_load(str(v))) for v in values})
        else:  # one value among the top trials: fixed
            assert any(f.startswith(f"{name}=") for f in fixed)
    assert dry_run(out.parents[1], "stage2", 3)
    proc = spec_cli(
        "narrow", str(tmp_path / "nothing"), "-o", str(tmp_path / "n.yaml"), cwd=tmp_path
    )
    assert proc.returncode == 2 and proc.stderr.startswith("rlhp: error:")
    old = tmp_path / "old.yaml"  # --sessions: max_session's old name, for one release
    proc = spec_cli(
        "narrow", str(sweep), "--top_k", "3", "--sessions", "3", "-o", str(old), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    deprecated = "rlhp.spec: warning: --sessions is deprecated; use --max_session"
    assert proc.stderr.splitlines() == [deprecated]
    assert yaml.safe_load(old.read_text())["max_session"] == 3
