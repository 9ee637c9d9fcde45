"""The console scripts: `rlhp train|analyze|validate|spec ARGS` (`python -m rlhp.<command>
ARGS`) and `rlhp-train ARGS`, the Hydra app itself, so that Hydra's tab completion works:
`eval "$(rlhp-train -sc install=bash)"`."""

import importlib
import sys

# `rlhp COMMAND`: the module whose main(argv) runs it (train is the Hydra app, below)
COMMANDS = {
    "train": "train one configuration, or search with -m (as rlhp-train)",
    "analyze": "the analysis of a sweep dir (experiment_df.csv, graphs, best.yaml, HParams)",
    "validate": "re-run a search's best configurations with fresh seeds",
    "spec": "an SLM-Lab spec as a search preset (import), or a search's second stage (narrow)",
}
MODULES = {"analyze": "rlhp.analyze", "validate": "rlhp.validate", "spec": "rlhp.spec.__main__"}

# Hydra's --help, naming rlhp and saying that the groups outside the default config take a +
HEADER = """rlhp: hyperparameter search for deep RL (a Hydra app).
  rlhp-train                                    PPO on CartPole-v1
  rlhp-train env=breakout algo.lr=3e-4          any group option, any field
  rlhp-train -m +search=ppo_cartpole            a search preset (conf/search/NAME.yaml)
  rlhp-train -m +search=ppo_breakout +cluster=slurm hydra.launcher.partition=gpu
Then: rlhp analyze SWEEP_DIR, rlhp validate SWEEP_DIR, rlhp spec import|narrow ...
Tab completion (bash): eval "$$(rlhp-train -sc install=bash)"
"""  # $$: Hydra fills the help in with string.Template
TEMPLATE = """${hydra.help.header}
== Configuration groups ==
algo=NAME, env=NAME choose an option; search and cluster are not in the default config and
take a +: +search=NAME, +cluster=slurm

$APP_CONFIG_GROUPS

== Config ==
Override anything in the config (foo.bar=value)

$CONFIG

${hydra.help.footer}"""
HELP = [
    "hydra.help.app_name=rlhp",
    f"hydra.help.header='{HEADER}'",
    f"hydra.help.template='{TEMPLATE}'",
]


def usage() -> str:
    lines = ["usage: rlhp COMMAND [ARGS ...]   (rlhp COMMAND --help: its own help)", ""]
    lines += [f"  {name:<9} {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def train() -> None:
    """`rlhp-train ARGS`: `python -m rlhp.train ARGS`, with rlhp's --help."""
    import hydra_plugins.rlhp_sweeper.config  # noqa: F401  the `ordered(...)` grammar, for the check
    from rlhp.train import check_overrides, main

    check_overrides(sys.argv[1:])
    if {"--help", "-h"} & set(sys.argv[1:]):
        sys.argv += HELP
    main()


def main(argv: list[str] | None = None) -> int:
    """`rlhp COMMAND ARGS`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command == "train":
        sys.argv = ["rlhp-train", *args]
        train()
        return 0
    if command not in MODULES:
        print(
            f"rlhp: error: unknown command {command!r}; one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    return importlib.import_module(MODULES[command]).main(args)


if __name__ == "__main__":
    sys.exit(main())
