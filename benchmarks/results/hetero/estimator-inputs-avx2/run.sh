#!/bin/bash
# Which input of the eft estimator errs (declared.md): one eft run, schedule --seed 0, the
# sketcher on the cloud, 0.04 req/s (~15 min). W: the sketcher's work directory (built by
# avx2-sketcher-0.04/run.sh step 1); R: results.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/estimator-inputs-avx2}
D=benchmarks/results/hetero/estimator-inputs-avx2
Q="--suitable 30 --load-only --rates 0.04 --load-requests 30 --slo-seconds 900 --modes pice-progressive"
[ -f "$R/seed0-eft/results.json" ] || pice bench --profile heterogeneous --placement eft \
    --seed 0 $Q --sketch-lora "$W/sketcher-adapter.gguf" --out "$R/seed0-eft"
mkdir -p "$D/seed0-eft" && cp "$R/seed0-eft/results."* "$D/seed0-eft/"
python benchmarks/hetero_compare.py benchmarks/results/hetero/estimator-avx2/seed0-eft \
    "$R/seed0-eft" --out "$D/compare.json"
