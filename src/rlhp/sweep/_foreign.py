"""The one place rlhp reaches into what Hydra and the Optuna sweeper keep private.

Neither has a public API for these; each use is wrapped here once, and
tests/sweep/test_private_apis.py fails when an upgrade changes one of them. (submitit's local
jobs are patched in `_local`, their one home, for the same reason.)
"""

from typing import Any

from hydra._internal.grammar import grammar_functions
from hydra.core.override_parser import overrides_parser
from hydra.core.override_parser.types import Override

_hydra_functions = overrides_parser.create_functions


def _functions() -> Any:
    functions = _hydra_functions()
    functions.register(name="ordered", func=grammar_functions.choice)
    return functions


def add_ordered() -> None:
    """Hydra's override grammar reads `ordered(...)` as `choice(...)` from now on, so a command
    line may hold it (`_space` reads it as an ordered dimension). Call it before Hydra parses the
    command line; calling it again changes nothing.

    Hydra has no way for a plugin to add a grammar function: its parser takes its function table
    from `overrides_parser.create_functions`, built on the private `grammar_functions`."""
    overrides_parser.create_functions = _functions


def distribution(override: Override) -> Any:
    """The Optuna sweeper's reading of a parsed override: an Optuna distribution for a sweep, the
    value as a string otherwise. The sweeper keeps it in its private `_impl`; a copy here would
    drift from the grammar users write for that sweeper."""
    # imported here: the plugin loads this module in every Hydra process, and _impl pulls in optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    return create_optuna_distribution_from_override(override)
