#!/bin/bash
# eft vs least-loaded on the heterogeneous testbed, AVX2-only machine, the framed sketcher on
# the cloud, 0.04 req/s, schedules --seed 0 and 1 (docs/benchmarks.md, "eft with the sketcher on
# an AVX2 machine"); declared.md was committed before the runs. W: the sketcher's work
# directory; R: results. ~26 min and ~23 GiB for step 1, ~15 min a run.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/hetero-avx2-sketcher-0.04}
D=benchmarks/results/hetero/avx2-sketcher-0.04 S=benchmarks/results/sketcher-framed
mkdir -p "$W" "$R"
# 1. The sketcher from its committed samples (no teacher is asked), trained to its published
#    step, as in sketcher-30q/run.sh.
if [ ! -f "$W/sketcher-adapter.gguf" ]; then
    cp "$S/sketch-v1.jsonl.raw.jsonl" "$W/"
    pice tune --workdir "$W" data --role sketcher --frame --samples 4 --threads 2
    pice tune --workdir "$W" train --role sketcher --max-steps 20 --save-every 5 \
        --val-share 0.15 --threads 2
    pice tune --workdir "$W" export --role sketcher
fi
# 2. One run per policy per schedule, in the drawn order.
Q="--suitable 30 --load-only --rates 0.04 --load-requests 30 --slo-seconds 900 --modes pice-progressive"
while read -r seed policies; do
    for policy in $policies; do
        [ -f "$R/seed$seed-$policy/results.json" ] && continue  # already run
        pice bench --profile heterogeneous --placement "$policy" --seed "$seed" $Q \
            --sketch-lora "$W/sketcher-adapter.gguf" --out "$R/seed$seed-$policy"
    done
done < "$D/order.txt"
# 3. The comparisons: pooled (declared), outlined slots, each schedule; then, descriptive
#    only, against this morning's stock runs (another session: not interleaved).
both() { echo "$1/seed0-$2,$1/seed1-$2"; }
python benchmarks/hetero_compare.py "$(both "$R" least-loaded)" "$(both "$R" eft)" --tail 3 \
    --out "$D/compare.json" --png docs/img/hetero_avx2_sketcher_0.04.png --labels "least-loaded,eft"
python benchmarks/hetero_compare.py --outlined-only "$(both "$R" least-loaded)" "$(both "$R" eft)" \
    --out "$D/compare-outlined.json"
for seed in 0 1; do
    python benchmarks/hetero_compare.py "$R/seed$seed-least-loaded" "$R/seed$seed-eft" \
        --out "$D/compare-seed$seed.json"
done
STOCK=benchmarks/results/hetero/avx2-stock-0.04  # their results.json are committed
python benchmarks/hetero_compare.py "$(both "$STOCK" least-loaded)" "$(both "$STOCK" eft)" \
    "$(both "$R" least-loaded)" "$(both "$R" eft)" --out "$D/compare-vs-stock.json"
