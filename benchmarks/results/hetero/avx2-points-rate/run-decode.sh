#!/bin/bash
# The addendum of declared.md: eft with the decode-rate fit on schedules 3 then 2, same setup
# as run.sh, then eft(points) against it. W, R as in run.sh. ~15 min a run.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/avx2-points-rate}
D=benchmarks/results/hetero/avx2-points-rate
Q="--suitable 30 --load-only --rates 0.04 --load-requests 30 --slo-seconds 900 --modes pice-progressive"
for seed in 3 2; do
    out="$R/seed$seed-eft-decode"
    [ -f "$out/results.json" ] || pice bench --profile heterogeneous --placement eft \
        --placement-rate decode --seed "$seed" $Q --sketch-lora "$W/sketcher-adapter.gguf" --out "$out"
    mkdir -p "$D/seed$seed-eft-decode" && cp "$out/results."* "$D/seed$seed-eft-decode/"
done
both() { echo "$1/seed2-$2,$1/seed3-$2"; }
python benchmarks/hetero_compare.py "$(both "$D" eft-decode)" "$(both "$D" eft)" \
    "$(both "$D" least-loaded)" --out "$D/compare-rate.json" \
    --png docs/img/hetero_avx2_points_vs_decode.png --labels "eft (decode rate),eft (points rate),least-loaded"
