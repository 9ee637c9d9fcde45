"""The console scripts: `rlhp train|analyze|validate|spec|stage ARGS` (`python -m rlhp.<command>
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
    "stage": "hyperparameters and reward weights (env.kwargs) searched in turn, one budget",
}
MODULES = {
    "analyze": "rlhp.analyze",
    "validate": "rlhp.validate",
    "spec": "rlhp.spec.__main__",
    "stage": "rlhp.stage",
}


def usage() -> str:
    lines = ["usage: rlhp COMMAND [ARGS ...]   (rlhp COMMAND --help: its own help)", ""]
    lines += [f"  {name:<9} {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def train() -> None:
    """`rlhp-train ARGS`: `python -m rlhp.train ARGS`."""
    import hydra_plugins.rlhp_sweeper.config  # noqa: F401  the `ordered(...)` grammar, for the check
    from rlhp.train import check_overrides, main

    check_overrides(sys.argv[1:])
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
