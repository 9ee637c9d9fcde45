"""hydra.sweeper.graphs=false: a search writes its analysis but the PNG graphs, which a later
`rlhp.analyze` draws."""

from sweep._cli import TINY, output, run_cli, run_sweep

from rlhp.analyze import GRAPHS


def test_a_search_without_graphs_leaves_them_to_rlhp_analyze(tmp_path):
    sweep = tmp_path / "sweep"
    settings = ["hydra.sweeper.n_trials=2", "hydra.sweeper.graphs=false"]
    proc = run_sweep(sweep, "algo.lr=tag(log, interval(1e-4, 1e-3))", *settings, *TINY)
    assert proc.returncode == 0, output(proc)
    assert not list(sweep.glob("*.png"))
    assert (sweep / "experiment_df.csv").is_file() and (sweep / "best.yaml").is_file()
    assert "  wrote experiment_df.csv, importance.yaml; tensorboard" in proc.stdout

    later = run_cli("analyze", sweep)
    assert later.returncode == 0, output(later)
    assert sorted(p.name for p in sweep.glob("*.png")) == sorted(GRAPHS)
