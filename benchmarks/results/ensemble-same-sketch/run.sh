#!/bin/bash
# Ensemble (k = 3) vs one candidate on identical sketches: each mode in its own fresh bench
# run (greedy cloud, fresh process: the same sketches), run order drawn with shuf; then judged.
cd "$(git rev-parse --show-toplevel)" && source .venv/bin/activate
R=${R:-out/ensemble-same-sketch}
mkdir -p "$R"
export PICE_PROGRESSIVE__ENSEMBLE_MAX_SLOWDOWN=inf
for mode in $(printf "pice-progressive\npice-ensemble\n" | shuf); do
  echo "$(date -u +%T) bench $mode"
  pice bench --suitable 40 --unsuitable 0 --modes $mode --no-load --no-judge --seed 0 \
    --out $R/$mode > $R/$mode.log 2>&1
  echo "$(date -u +%T) done $mode rc=$?"
done
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > $R/judge-server.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8200/v1/models >/dev/null && break; sleep 1; done
echo "$(date -u +%T) judge"
python benchmarks/rejudge.py $R/pice-ensemble/results.json --baseline-results $R/pice-progressive/results.json \
  --pair pice-ensemble:pice-progressive --judge-url http://127.0.0.1:8200/v1 --out $R/ensemble_vs_single.json > $R/judge.log 2>&1
echo "$(date -u +%T) judged rc=$?"
kill $SRV
python benchmarks/point_checks.py $R/pice-progressive/results.json $R/pice-ensemble/results.json \
  --mode-b pice-ensemble --out $R/point_checks.json
