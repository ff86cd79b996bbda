#!/usr/bin/env bash
# Set up, lint, check the rules, and run the whole test suite. Fails on any failure or on no tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# System tools the tests use for real: prometheus + promtool (dashboards, alerting rules), chromium
# (the analyst report), systemd-analyze (the unit file). Installed non-interactively when missing.
need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
bash scripts/setup.sh
.venv/bin/ruff check detector tests dashboards scripts benchmarks
.venv/bin/ruff format --check detector tests dashboards scripts benchmarks
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
