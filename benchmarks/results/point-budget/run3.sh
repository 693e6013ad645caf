#!/bin/bash
# After run.sh (not declared beforehand; added on reading new vs cloud-only, -0.10 against the
# -0.03 of an earlier run of the old code): the old run judged against the same cloud-only, so
# that both runs meet one baseline and the run-to-run spread of the default is seen.
cd "$(git rev-parse --show-toplevel)" && source .venv/bin/activate
R=${R:-benchmarks/results/point-budget}
C=benchmarks/results/edge-1.5b/bench/results.json
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > $R/judge-server.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8200/v1/models >/dev/null && break; sleep 1; done
echo "$(date -u +%T) judge 3: old vs cloud-only"
python benchmarks/rejudge.py $R/old/results.json --baseline-results $C \
  --pair pice-progressive:cloud-only --judge-url http://127.0.0.1:8200/v1 \
  --out $R/old_vs_cloud.json > $R/judge3.log 2>&1
echo "$(date -u +%T) judged rc=$?"
kill $SRV
python benchmarks/by_path.py $R/old/results.json $R/old_vs_cloud.json \
  --pair pice-progressive:cloud-only --baseline-results $C \
  --out $R/by_path_old_vs_cloud.json > $R/by_path_old_vs_cloud.md
echo "$(date -u +%T) done"
