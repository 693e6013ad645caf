#!/bin/bash
# The second run (declared.md, addendum): the 1.5B edge alone, as the 0.5B run was made, so
# the sketches match; judged against the 0.5B edge and against the first run's cloud-only.
cd "$(git rev-parse --show-toplevel)" && source .venv/bin/activate
R=${R:-benchmarks/results/edge-1.5b}
A=benchmarks/results/point-words/words40/results.json   # the 0.5B edge (default), 40 words
mkdir -p "$R"
echo "$(date -u +%T) bench"
pice bench --suitable 40 --unsuitable 0 --modes pice-progressive --no-load --no-judge \
  --seed 0 --edge-model qwen2.5-coder-1.5b-instruct --out $R/alone > $R/alone.log 2>&1
echo "$(date -u +%T) bench rc=$?"
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > $R/judge-server.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8200/v1/models >/dev/null && break; sleep 1; done
J="--judge-url http://127.0.0.1:8200/v1"
echo "$(date -u +%T) judge 1: 1.5B edge (alone) vs 0.5B edge"
python benchmarks/rejudge.py $R/alone/results.json --baseline-results $A \
  --pair pice-progressive:pice-progressive $J --out $R/alone_vs_edge05.json > $R/judge4.log 2>&1
echo "$(date -u +%T) judge 2: 1.5B edge (alone) vs the first run's cloud-only"
python benchmarks/rejudge.py $R/alone/results.json --baseline-results $R/bench/results.json \
  --pair pice-progressive:cloud-only $J --out $R/alone_vs_cloud.json > $R/judge5.log 2>&1
echo "$(date -u +%T) judged rc=$?"
kill $SRV
python benchmarks/point_checks.py $A $R/alone/results.json --out $R/point_checks_alone.json
python benchmarks/by_path.py $R/alone/results.json $R/alone_vs_edge05.json \
  --pair pice-progressive:pice-progressive --baseline-results $A \
  --out $R/by_path_alone_vs_edge05.json > $R/by_path_alone_vs_edge05.md
python benchmarks/by_path.py $R/alone/results.json $R/alone_vs_cloud.json \
  --pair pice-progressive:cloud-only --baseline-results $R/bench/results.json \
  --out $R/by_path_alone_vs_cloud.json > $R/by_path_alone_vs_cloud.md
echo "$(date -u +%T) done"
