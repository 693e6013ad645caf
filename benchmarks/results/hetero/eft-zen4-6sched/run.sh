#!/bin/bash
# eft vs least-loaded with the framed sketcher on the heterogeneous testbed, 2-core AMD EPYC
# Zen 4 (AVX-512, no AMX), on three more arrival schedules (`--seed` 3, 4, 5), one run per
# policy each (docs/benchmarks.md, "eft on six schedules, AVX-512"). Each schedule's order was
# drawn with Python's random.Random(40): order-schedules345.txt. Declared before the runs: the
# comparison that decides is six schedules pooled, one run per policy each (schedule 0 round 1
# and schedules 1 and 2 from ../overflow-zen4-3sched, run on 2026-12-03 11:57-13:58 UTC, with
# these three), stratified by schedule; the three new schedules are also compared alone.
# W: the sketcher's work directory (../sketcher-zen4-30q/run.sh step 1 builds it); R: results
# (the runs' results.json and results.md are kept in this directory: R=$D reruns step 2 alone).
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/hetero-eft-zen4-6sched}
D=benchmarks/results/hetero/eft-zen4-6sched P=benchmarks/results/hetero/overflow-zen4-3sched
mkdir -p "$R"
Q="--suitable 30 --load-only --rates 0.07 --load-requests 30 --slo-seconds 600 --modes pice-progressive"
# 1. Schedules 3, 4 and 5, one run per policy (7-8 min a run: their arrivals span 374-458 s).
while read -r seed policies; do
    for policy in $policies; do
        [ -f "$R/seed$seed-$policy/results.json" ] && continue  # already run
        pice bench --profile heterogeneous --placement "$policy" --seed "$seed" $Q \
            --sketch-lora "$W/sketcher-adapter.gguf" --out "$R/seed$seed-$policy"
    done
done < "$D/order-schedules345.txt"
# 2. The tables of docs/benchmarks.md (JSON in this directory).
new() { echo "$R/seed3-$1,$R/seed4-$1,$R/seed5-$1"; }
python benchmarks/hetero_compare.py "$(new least-loaded)" "$(new eft)" --tail 3 \
    --out "$D/compare-schedules345.json"
for seed in 3 4 5; do
    python benchmarks/hetero_compare.py "$R/seed$seed-least-loaded" "$R/seed$seed-eft" \
        --out "$D/compare-schedule$seed.json"
done
six() { echo "$P/$1-1,$P/seed1-$1,$P/seed2-$1,$(new "$1")"; }
python benchmarks/hetero_compare.py "$(six least-loaded)" "$(six eft)" \
    --out "$D/compare-6sched.json" --png docs/img/hetero_eft_6sched.png --labels "least-loaded,eft"
