"""SLM-Lab specs in, search presets out: `python -m rlhp.spec import|narrow ...`.

- `import SPEC.json [SPEC_NAME] [-o conf/search/NAME.yaml]` turns an SLM-Lab spec into an rlhp
  preset: the algorithm, net, memory and env fields that have an rlhp name, `meta.max_trial`,
  `max_session`, `search_scheduler`, `search_resources`, and the `search` block (flat dotted keys
  or nested blocks; `__uniform`, `__loguniform`, `__randint` (upper end excluded, as in
  SLM-Lab), `__choice`, `__grid_search`). It sets every value the spec fixes (constant lr and
  clip_eps turn rlhp's annealing off), names the rlhp defaults that still apply, and lists the
  fields with no rlhp counterpart in the preset's header and on stderr. Spec variables
  (`${env}`) take `--set VAR=VALUE` or expand to one preset per `spec_params` value.
- `narrow SWEEP [--top_k 5] -o conf/search/NAME.yaml` writes stage 2 of SLM-Lab's coarse-to-fine
  search: ranges spanning the top-k configurations of a finished search (log-aware, padded),
  more sessions per trial, no ASHA. Stage 3 is `python -m rlhp.validate`.
"""

from rlhp.spec._import import import_spec
from rlhp.spec._narrow import narrow
from rlhp.spec._preset import SpecError

__all__ = ["SpecError", "import_spec", "narrow"]
