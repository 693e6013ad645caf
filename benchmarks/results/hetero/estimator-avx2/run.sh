#!/bin/bash
# The eft estimator checked on the heterogeneous testbed (declared.md): one eft run, schedule
# --seed 0, the sketcher on the cloud, 0.04 req/s (~15 min). W: the sketcher's work directory
# (built by avx2-sketcher-0.04/run.sh step 1); R: results.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/estimator-avx2}
D=benchmarks/results/hetero/estimator-avx2 P=benchmarks/results/hetero/avx2-sketcher-0.04
Q="--suitable 30 --load-only --rates 0.04 --load-requests 30 --slo-seconds 900 --modes pice-progressive"
[ -f "$R/seed0-eft/results.json" ] || pice bench --profile heterogeneous --placement eft \
    --seed 0 $Q --sketch-lora "$W/sketcher-adapter.gguf" --out "$R/seed0-eft"
# The estimator table; and the earlier run of the same setup beside it (it has no estimates).
python benchmarks/hetero_compare.py "$P/seed0-eft" "$R/seed0-eft" --out "$D/compare.json"
