#!/usr/bin/env bash
# The whole test suite on a fresh machine: the system tools the placement tests
# need (numactl, gcc for the OpenMP check), a virtualenv with the test extra,
# then lint, types and pytest. Usage: ./scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v numactl >/dev/null || need+=(numactl)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if command -v apt-get >/dev/null; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
    elif command -v dnf >/dev/null; then
        $sudo dnf install -y "${need[@]}"
    else
        echo "scripts/test.sh: please install: ${need[*]}" >&2
        exit 2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check supervisor topology tests scripts examples
.venv/bin/mypy --strict supervisor topology
.venv/bin/python -m pytest -q "$@"
