#!/bin/bash
# The ensemble's selector on held-out questions, point by point (docs/benchmarks.md, "The
# selector on held-out questions"): k = 3 candidates of the stock edge for 68 committed
# outlines, then the 1.5B judge on the points where the shipped pick differs from the greedy
# candidate and from the most confident one. ~45 min on a quiet 2-core machine. R: results.
set -euo pipefail
R=${R:-bench-results/selector-heldout}
mkdir -p "$R"
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > "$R/judge.log" 2>&1 &
JUDGE=$!
trap 'kill -INT $JUDGE 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:8200/ready > /dev/null; do sleep 2; done
python benchmarks/selector_heldout.py \
    --bench benchmarks/results/ensemble-same-sketch/pice-progressive/results.json \
    --sketches benchmarks/results/sketcher-framed/sketch_eval.raw.jsonl \
    --sketch-questions benchmarks/router/heldout.jsonl \
    --judge-url http://127.0.0.1:8200/v1 --work "$R"
