#!/usr/bin/env bash
# Create bench/.venv-mlflow: MLflow (the anchor of bench_snapshot.py and
# bench_feedback.py) in a venv of its own, so that it never enters the project's .venv.
#
#   bash bench/setup_anchors.sh            # create it if missing or incomplete
#   bash bench/setup_anchors.sh --force    # re-create it
#   bash bench/setup_anchors.sh --evidently [--force]   # bench/.venv-evidently instead
#
# scikit-learn, skops and numpy are pinned to the versions of the project's .venv
# (when it exists), so that both environments fit the very same model from the
# same seed. pandas is pinned too when MLflow accepts that version (MLflow 3.17
# works with pandas 3.1); pyarrow is left to MLflow (it caps it below 26).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv-mlflow"
STAMP="$VENV/.ready"
PYTHON="${PYTHON:-python3}"
MLFLOW_SPEC="${MLFLOW_SPEC:-mlflow==3.17.2}"

if [[ "${1:-}" == "--evidently" ]]; then
    # Evidently (an anchor of bench_feedback.py): 0.7.23 does not import with pandas 3,
    # so it gets pandas 2 in a venv of its own; numpy is pinned to the project venv's
    # version when pip accepts it, so both draw the same benchmark data from one seed.
    VENV="$HERE/.venv-evidently"
    STAMP="$VENV/.ready"
    EVIDENTLY_SPEC="${EVIDENTLY_SPEC:-evidently==0.7.23}"
    if [[ "${2:-}" == "--force" ]]; then
        rm -rf "$VENV"
    elif [[ -f "$STAMP" ]]; then
        exit 0
    fi
    numpy_pin="numpy"
    if [[ -x "$ROOT/.venv/bin/python" ]]; then
        numpy_pin="numpy==$("$ROOT/.venv/bin/python" -c 'import numpy; print(numpy.__version__)')"
    fi
    echo "setup_anchors: creating $VENV ($EVIDENTLY_SPEC pandas<3 $numpy_pin)" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    if ! "$VENV/bin/python" -m pip install --quiet "$EVIDENTLY_SPEC" "pandas<3" scikit-learn \
        pyarrow scipy "$numpy_pin"; then
        echo "setup_anchors: retrying with the numpy version Evidently accepts" >&2
        "$VENV/bin/python" -m pip install --quiet "$EVIDENTLY_SPEC" "pandas<3" scikit-learn \
            pyarrow scipy numpy
    fi
    "$VENV/bin/python" -c "import evidently, pandas, numpy, scipy, sklearn"
    "$VENV/bin/python" -m pip freeze > "$STAMP"
    echo "setup_anchors: ready ($(grep -iE '^(evidently|pandas|numpy)==' "$STAMP" | tr '\n' ' '))" >&2
    exit 0
fi

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$VENV"
elif [[ -f "$STAMP" ]]; then
    exit 0
fi

pins=()
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    while read -r pin; do
        pins+=("$pin")
    done < <("$ROOT/.venv/bin/python" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version

for dist in ("scikit-learn", "skops", "numpy", "pandas"):
    try:
        print(f"{dist}=={version(dist)}")
    except PackageNotFoundError:
        print(dist)
EOF
    )
else
    pins=(scikit-learn skops numpy pandas)
fi

echo "setup_anchors: creating $VENV ($MLFLOW_SPEC ${pins[*]})" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if ! "$VENV/bin/python" -m pip install --quiet "$MLFLOW_SPEC" pyarrow "${pins[@]}"; then
    # the project's pandas may be too new for this MLflow: let pip pick one
    echo "setup_anchors: retrying with the pandas version MLflow accepts" >&2
    unpinned=()
    for pin in "${pins[@]}"; do
        [[ "$pin" == pandas* ]] && pin="pandas"
        unpinned+=("$pin")
    done
    "$VENV/bin/python" -m pip install --quiet "$MLFLOW_SPEC" pyarrow "${unpinned[@]}"
fi
"$VENV/bin/python" -c "import mlflow, mlflow.sklearn, pandas, sklearn, skops, pyarrow"
"$VENV/bin/python" -m pip freeze > "$STAMP"
echo "setup_anchors: ready ($(grep -iE '^(mlflow|pandas|scikit-learn|pyarrow)==' "$STAMP" | tr '\n' ' '))" >&2
