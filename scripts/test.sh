#!/usr/bin/env bash
# The whole test suite on a fresh machine: the Debian packages listed in
# .ci/apt-packages (numactl, gcc, curl, ...), a virtualenv with the test extra,
# then lint, types and pytest. Usage: ./scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
while read -r pkg _; do
    [ -z "$pkg" ] && continue
    case "$pkg" in \#*) continue ;; esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done < .ci/apt-packages
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if command -v apt-get >/dev/null; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
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
