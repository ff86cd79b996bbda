#!/usr/bin/env bash
# Set up, lint, check the rules, and run the whole test suite. Fails on any failure or on no tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check detector tests
.venv/bin/mypy
.venv/bin/detector rules check rules
set +e
.venv/bin/python -m pytest -q
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
