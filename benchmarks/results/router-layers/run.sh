#!/bin/bash
# A 4-block router encoder against the shipped 6-block recipe (docs/benchmarks.md, "A shallower
# router encoder for AVX2's decision time"); declared.md was committed before any fit.
# SOT: a clone of https://github.com/imagination-research/sot at 54f506f (its human labels).
# About 45 min on an idle 2-core machine (ten fits of ~2-4 min, the latency run ~1 min).
set -euo pipefail
# K keeps the 4-block fits' factors (not committed; the recipe JSON of seed 0 is, with sha256).
SOT=${SOT:-sot} D=benchmarks/results/router-layers K=${K:-out/router-layers}
L="$SOT/data/lima/router.csv" H=benchmarks/router/heldout.jsonl
# 1. The decision's inputs: LIMA (the development set) and the project's held-out set, seeds 0-2.
python benchmarks/router_seeds.py --seeds 0,1,2 --layers 4 $H "$L" --keep "$K" \
    --out $D/seeds-4blocks.json
python benchmarks/router_seeds.py --seeds 0,1,2 $H "$L" --out $D/seeds-6blocks.json
cp "$K/lora-0.json" $D/encoder-lora-4blocks-seed0.json
# 2. Decision time on one core, the candidate interleaved with the shipped graphs.
taskset -c 1 python benchmarks/router_latency.py --rounds 3 --candidate-layers 4 \
    --candidate "$K/lora-0.npz" --out $D/latency.json
# 3. After the decision: the seed-0 fits once on people's labels (WizardLM, Vicuna-80).
W="$SOT/data/wizardlm/router.csv" V="$SOT/data/vicuna/router.csv"
python benchmarks/router_seeds.py --seeds 0 --layers 4 $H "$L" "$W" "$V" \
    --out $D/seed0-4blocks-human.json
python benchmarks/router_seeds.py --seeds 0 $H "$L" "$W" "$V" --out $D/seed0-6blocks-human.json
# 4. Paired, question by question, with intervals: the seed-0 fits again, kept (LoRA and head).
python benchmarks/router_seeds.py --seeds 0 --layers 4 $H --keep "$K/k4"
python benchmarks/router_seeds.py --seeds 0 $H --keep "$K/k6"
python benchmarks/router_paired.py $H "$L" "$W" "$V" \
    --a-weights "$K/k6/head-0.json" --a-lora "$K/k6/lora-0.npz" \
    --b-weights "$K/k4/head-0.json" --b-lora "$K/k4/lora-0.npz" --b-layers 4 \
    --out $D/paired-seed0.json
