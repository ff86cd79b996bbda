#!/usr/bin/env bash
# Set up, then simulate three days of labelled traffic, replay it through the engine and score the alerts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-out/demo}
.venv/bin/detector simulate --out "$OUT" --days 3 --seed 1
.venv/bin/detector replay "$OUT/events.jsonl" --alerts-out "$OUT/alerts.jsonl" --rejects-out "$OUT/rejects.jsonl"
.venv/bin/detector evaluate --labels "$OUT/labels.json" --alerts "$OUT/alerts.jsonl"
