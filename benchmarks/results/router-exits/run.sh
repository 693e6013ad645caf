#!/bin/bash
# Early exits for the router: router-v3.2 against router-v3.1 (docs/benchmarks.md, "Early exits
# (router-v3.2)"); declared.md was committed before the measurement.
# SOT: a clone of https://github.com/imagination-research/sot at 54f506f (its human labels).
# About 6 min on an idle 2-core machine; pinned to core 1 (the "one core").
set -euo pipefail
SOT=${SOT:-sot} D=benchmarks/results/router-exits
V31=$(mktemp --suffix=.json) AGAIN=$(mktemp --suffix=.json)
trap 'rm -f "$V31" "$AGAIN"' EXIT
git show 0936b3a:src/pice_gateway/router/weights.json > "$V31"   # router-v3.1: no exits
SETS=(benchmarks/router/heldout.jsonl benchmarks/router/bench_questions.jsonl
      "$SOT/data/vicuna/router.csv" "$SOT/data/wizardlm/router.csv" "$SOT/data/lima/router.csv")
# 0. The shipped weights again from the shipped data (same final head, the two exit heads);
#    byte-identical here (the int8 kernels may move the third decimal on another CPU).
pice router train --exit-blocks 2,4 --deploy-outline-share 0.3602 --out "$AGAIN"
cmp -s "$AGAIN" src/pice_gateway/router/weights.json && echo "retrained: identical" \
    || diff "$AGAIN" src/pice_gateway/router/weights.json || true
# 1. Criterion 1: each labelled set, router-v3.1 (a) against router-v3.2 (b), question by question.
taskset -c 1 python benchmarks/router_paired.py --a-weights "$V31" \
    --a-lora src/pice_gateway/router/encoder-lora.npz "${SETS[@]}" --out $D/paired.json
# 2. Criterion 2: decision time on one core, interleaved with the whole encoder, on questions no
#    head was fitted on (two seeds: two conversation draws); then on the old training-question set.
for seed in 0 1; do
  taskset -c 1 python benchmarks/router_latency.py --rounds 3 --questions untrained \
      --seed $seed --out $D/latency-untrained-seed$seed.json
done
taskset -c 1 python benchmarks/router_latency.py --rounds 3 --out $D/latency-training.json
# 3. Reported: each set's exit shares and p50 (sequential runs, not interleaved), with and without.
taskset -c 1 pice router eval "${SETS[@]}" --no-error-text --out $D/eval-v32.json
taskset -c 1 pice router eval --no-early-exit "${SETS[@]}" --no-error-text \
    --out $D/eval-v32-no-exit.json
# 4. The figure (docs/img/router_exits.png).
python benchmarks/plot_router_exits.py --eval $D/eval-v32.json \
    --latency "dev + held-out, seed 0=$D/latency-untrained-seed0.json" \
    --latency "dev + held-out, seed 1=$D/latency-untrained-seed1.json" \
    --latency "training + dev=$D/latency-training.json" --out docs/img/router_exits.png
