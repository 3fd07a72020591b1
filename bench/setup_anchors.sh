#!/usr/bin/env bash
# Create bench/.venv-mlflow: MLflow (the anchor of bench_snapshot.py) in a venv of its
# own, so that it never enters the project's .venv.
#
#   bash bench/setup_anchors.sh            # create it if missing or incomplete
#   bash bench/setup_anchors.sh --force    # re-create it
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
