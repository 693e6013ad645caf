#!/bin/bash
# eft vs least-loaded on the heterogeneous testbed, AVX2-only machine, stock cloud, 0.04 req/s,
# schedules --seed 0 and 1 (docs/benchmarks.md, "eft on an AVX2 machine below the cloud's
# capacity"); declared.md was committed before the runs. ~14 min a run. R: results.
set -euo pipefail
R=${R:-bench-results/hetero-avx2-0.04} D=benchmarks/results/hetero/avx2-stock-0.04
mkdir -p "$R"
Q="--suitable 30 --load-only --rates 0.04 --load-requests 30 --slo-seconds 900 --modes pice-progressive"
while read -r seed policies; do
    for policy in $policies; do
        [ -f "$R/seed$seed-$policy/results.json" ] && continue  # already run
        pice bench --profile heterogeneous --placement "$policy" --seed "$seed" $Q \
            --out "$R/seed$seed-$policy"
    done
done < "$D/order.txt"
both() { echo "$R/seed0-$1,$R/seed1-$1"; }
python benchmarks/hetero_compare.py "$(both least-loaded)" "$(both eft)" --tail 3 \
    --out "$D/compare.json" --png docs/img/hetero_avx2_0.04.png --labels "least-loaded,eft"
python benchmarks/hetero_compare.py --outlined-only "$(both least-loaded)" "$(both eft)" \
    --out "$D/compare-outlined.json"
for seed in 0 1; do
    python benchmarks/hetero_compare.py "$R/seed$seed-least-loaded" "$R/seed$seed-eft" \
        --out "$D/compare-seed$seed.json"
done
