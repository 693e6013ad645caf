#!/bin/bash
# eft vs least-loaded on the heterogeneous testbed, 30 questions, the defaults, with the
# framed sketcher on the cloud (docs/benchmarks.md, "The framed sketcher on the testbed").
# The prose fallbacks the sketcher cuts (8 -> 3 of 40 suitable questions, one at a time) were
# the tail of the six pairs without it. W: the sketcher's work directory; R: results.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/hetero-sketcher-30q}
S=benchmarks/results/sketcher-framed
mkdir -p "$W" "$R"
# 1. The sketcher, as in $S/run.sh, from its committed samples (no teacher is asked) and
#    trained to its published step: the optimiser's learning rate is constant, so the
#    checkpoint of step 20 is the same in a 20-step run (~20 min, ~23 GiB).
cp "$S/sketch-v1.jsonl.raw.jsonl" "$W/"
pice tune --workdir "$W" data --role sketcher --frame --samples 4 --threads 2
pice tune --workdir "$W" train --role sketcher --max-steps 20 --save-every 5 --val-share 0.15 \
    --threads 2
pice tune --workdir "$W" export --role sketcher
# 2. One pair with the sketcher, then one pair with the stock cloud on this machine (the
#    earlier sets ran on another CPU), each pair's order drawn (~8 min a run). A second
#    sketcher pair was started and stopped for the stock pair: the first sketcher run was far
#    slower than the AVX-512 machine's stock runs, and only a stock pair here can say why.
Q="--suitable 30 --load-only --seed 0 --rates 0.07 --load-requests 30 --slo-seconds 600 --modes pice-progressive"
for policy in $(printf "least-loaded\neft\n" | shuf); do
    pice bench --profile heterogeneous --placement "$policy" $Q \
        --sketch-lora "$W/sketcher-adapter.gguf" --out "$R/$policy-1"
done
for policy in $(printf "least-loaded\neft\n" | shuf); do
    pice bench --profile heterogeneous --placement "$policy" $Q --out "$R/stock-$policy-1"
done
# 3. The comparisons (the tables of docs/benchmarks.md, in this directory as JSON): the
#    sketcher against the stock cloud, both policies pooled (every arrival, then the slots
#    outlined in every run) with the plot; the four runs against stock least-loaded; eft
#    against least-loaded with each cloud.
python benchmarks/hetero_compare.py "$R/stock-least-loaded-1,$R/stock-eft-1" \
    "$R/least-loaded-1,$R/eft-1" --out "$R/compare-sketcher-pooled.json" --png docs/img/hetero_sketcher_tails.png \
    --labels "stock cloud (least-loaded + eft),sketcher (least-loaded + eft)"
python benchmarks/hetero_compare.py --outlined-only "$R/stock-least-loaded-1,$R/stock-eft-1" \
    "$R/least-loaded-1,$R/eft-1" --out "$R/compare-sketcher-pooled-outlined.json"
python benchmarks/hetero_compare.py "$R/stock-least-loaded-1" "$R/stock-eft-1" \
    "$R/least-loaded-1" "$R/eft-1" --out "$R/compare-sketcher.json"
python benchmarks/hetero_compare.py --outlined-only "$R/stock-least-loaded-1" "$R/stock-eft-1" \
    "$R/least-loaded-1" "$R/eft-1" --out "$R/compare-sketcher-outlined.json"
python benchmarks/hetero_compare.py "$R/least-loaded-1" "$R/eft-1" --out "$R/compare.json"
python benchmarks/hetero_compare.py "$R/stock-least-loaded-1" "$R/stock-eft-1" \
    --out "$R/compare-stock.json"
