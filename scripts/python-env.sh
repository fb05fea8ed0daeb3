#!/usr/bin/env bash
# The Python environment of the client tests (tests/python/requirements.txt, pinned): a
# virtual environment at $FOCUS_PYTHON_ENV (default ~/.cache/focus-python), created or
# brought up to date. Prints nothing when it is already current.
set -euo pipefail
cd "$(dirname "$0")/.."
env=${FOCUS_PYTHON_ENV:-$HOME/.cache/focus-python}
req=tests/python/requirements.txt
stamp="$env/.requirements"
if [ -x "$env/bin/python" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
python3 -m venv "$env"
"$env/bin/pip" install --quiet -r "$req"
cp "$req" "$stamp"
echo "python environment ready: $env"
