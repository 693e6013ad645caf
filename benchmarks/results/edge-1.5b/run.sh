#!/bin/bash
# The expander's size: model pice-progressive with the 1.5B model on the edge (the cloud's own
# GGUF) against cloud-only in one bench run (mode order drawn per question), then the judge
# against that cloud-only and against the 0.5B edge's run with the same prompts
# (point-words/words40; 21 of 40 sketches came out identical, see the docs). docs/benchmarks.md, "Which model expands the points". ~65 min.
cd "$(git rev-parse --show-toplevel)" && source .venv/bin/activate
R=${R:-benchmarks/results/edge-1.5b}
A=benchmarks/results/point-words/words40/results.json   # the 0.5B edge (default), 40 words
mkdir -p "$R"
echo "$(date -u +%T) bench"
pice bench --suitable 40 --unsuitable 0 --modes pice-progressive,cloud-only --no-load --no-judge \
  --seed 0 --edge-model qwen2.5-coder-1.5b-instruct --out $R/bench > $R/bench.log 2>&1
echo "$(date -u +%T) bench rc=$?"
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > $R/judge-server.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8200/v1/models >/dev/null && break; sleep 1; done
J="--judge-url http://127.0.0.1:8200/v1"
echo "$(date -u +%T) judge 1: 1.5B edge vs 0.5B edge"
python benchmarks/rejudge.py $R/bench/results.json --baseline-results $A \
  --pair pice-progressive:pice-progressive $J --out $R/edge15_vs_edge05.json > $R/judge1.log 2>&1
echo "$(date -u +%T) judge 2: 1.5B edge vs cloud-only"
python benchmarks/rejudge.py $R/bench/results.json \
  --pair pice-progressive:cloud-only $J --out $R/edge15_vs_cloud.json > $R/judge2.log 2>&1
echo "$(date -u +%T) judge 3: 0.5B edge vs the same cloud-only"
python benchmarks/rejudge.py $A --baseline-results $R/bench/results.json \
  --pair pice-progressive:cloud-only $J --out $R/edge05_vs_cloud.json > $R/judge3.log 2>&1
echo "$(date -u +%T) judged rc=$?"
kill $SRV
python benchmarks/point_checks.py $A $R/bench/results.json --out $R/point_checks.json
echo "$(date -u +%T) done"
# Added after the run (the split by path, in the docs' tables):
W=$A
python benchmarks/by_path.py $R/bench/results.json $R/edge15_vs_cloud.json --pair pice-progressive:cloud-only \
  --out $R/by_path_edge15_vs_cloud.json > $R/by_path_edge15_vs_cloud.md
python benchmarks/by_path.py $W $R/edge05_vs_cloud.json --pair pice-progressive:cloud-only \
  --baseline-results $R/bench/results.json --out $R/by_path_edge05_vs_cloud.json > $R/by_path_edge05_vs_cloud.md
python benchmarks/by_path.py $R/bench/results.json $R/edge15_vs_edge05.json --pair pice-progressive:pice-progressive \
  --baseline-results $W --out $R/by_path_edge15_vs_edge05.json > $R/by_path_edge15_vs_edge05.md
