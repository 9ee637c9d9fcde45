#!/usr/bin/env bash
# The rl-baselines3-zoo venv of benchmarks/search_quality.py, apart from rlhp's environment (the
# zoo pins its own stable-baselines3, gymnasium and optuna).
#   bash benchmarks/zoo_venv.sh [DIR]     # default: $ZOO_VENV or /tmp/rlhp-zoo-venv
set -euo pipefail
venv="${1:-${ZOO_VENV:-/tmp/rlhp-zoo-venv}}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# pandas: the zoo writes its optimisation report with it
"$venv/bin/pip" install -q "torch==2.13.0" rl_zoo3 pandas
"$venv/bin/python" -c "import rl_zoo3, stable_baselines3, optuna; print('zoo venv:', '$venv', \
'rl_zoo3', rl_zoo3.__version__, 'sb3', stable_baselines3.__version__, 'optuna', optuna.__version__)"
