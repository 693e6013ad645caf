#!/bin/bash
# eft vs least-loaded on heterogeneous-isolated (edge quotas 0.75 / 0.25), AVX2-only machine,
# the sketcher on the cloud, 0.04 req/s, schedules --seed 4 and 5 (declared.md, committed before
# the runs). W: the sketcher's work directory (avx2-sketcher-0.04/run.sh step 1 builds it); R:
# results. ~15 min a run.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/avx2-isolated}
D=benchmarks/results/hetero/avx2-isolated
Q="--suitable 30 --load-only --rates 0.04 --load-requests 30 --slo-seconds 900 --modes pice-progressive"
while read -r seed policies; do
    for policy in $policies; do
        [ -f "$R/seed$seed-$policy/results.json" ] && continue  # already run
        pice bench --profile heterogeneous-isolated --placement "$policy" --seed "$seed" $Q \
            --sketch-lora "$W/sketcher-adapter.gguf" --out "$R/seed$seed-$policy"
        mkdir -p "$D/seed$seed-$policy" && cp "$R/seed$seed-$policy/results."* "$D/seed$seed-$policy/"
    done
done < "$D/order.txt"
both() { echo "$1/seed4-$2,$1/seed5-$2"; }
python benchmarks/hetero_compare.py "$(both "$D" least-loaded)" "$(both "$D" eft)" --tail 3 \
    --out "$D/compare.json" --png docs/img/hetero_avx2_isolated.png --labels "least-loaded,eft"
python benchmarks/hetero_compare.py --outlined-only "$(both "$D" least-loaded)" "$(both "$D" eft)" \
    --out "$D/compare-outlined.json"
for seed in 4 5; do
    python benchmarks/hetero_compare.py "$D/seed$seed-least-loaded" "$D/seed$seed-eft" \
        --out "$D/compare-seed$seed.json"
done
# The estimator tables of the eft runs are in compare-seed4/5.json.
