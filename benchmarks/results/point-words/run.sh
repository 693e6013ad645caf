#!/bin/bash
# Longer point bodies (docs/benchmarks.md, "Longer point bodies"): model pice-progressive with
# progressive.point_words = 60 against cloud-only, each mode in its own fresh bench run (greedy
# cloud, fresh process: the sketches of ensemble-same-sketch's default run), order drawn with
# shuf; then the judge, and the default run (40 words, committed) read beside it. ~55 min.
cd "$(git rev-parse --show-toplevel)" && source .venv/bin/activate
R=${R:-out/point-words}
A=benchmarks/results/ensemble-same-sketch/pice-progressive/results.json   # 40 words (default)
mkdir -p "$R"
for mode in $(printf "pice-progressive\ncloud-only\n" | shuf); do
  echo "$(date -u +%T) bench $mode"
  if [ "$mode" = pice-progressive ]; then export PICE_PROGRESSIVE__POINT_WORDS=60; fi
  pice bench --suitable 40 --unsuitable 0 --modes $mode --no-load --no-judge --seed 0 \
    --out $R/$mode > $R/$mode.log 2>&1
  echo "$(date -u +%T) done $mode rc=$?"
  unset PICE_PROGRESSIVE__POINT_WORDS
done
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > $R/judge-server.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8200/v1/models >/dev/null && break; sleep 1; done
echo "$(date -u +%T) judge"
python benchmarks/rejudge.py $R/pice-progressive/results.json --baseline-results $R/cloud-only/results.json \
  --pair pice-progressive:cloud-only --judge-url http://127.0.0.1:8200/v1 --out $R/words60_vs_cloud.json > $R/judge.log 2>&1
echo "$(date -u +%T) judged rc=$?"
python benchmarks/rejudge.py $R/pice-progressive/results.json --baseline-results $A \
  --pair pice-progressive:pice-progressive --judge-url http://127.0.0.1:8200/v1 --out $R/words60_vs_words40.json > $R/judge40.log 2>&1
echo "$(date -u +%T) judged rc=$?"
kill $SRV
python benchmarks/point_checks.py $A $R/pice-progressive/results.json --out $R/point_checks.json
# The default (40 words) run again, fresh on this machine, for the latency and length ratios
# (the committed one is from another day): added after the judging above, run last.
pice bench --suitable 40 --unsuitable 0 --modes pice-progressive --no-load --no-judge --seed 0 \
  --out $R/words40 > $R/words40.log 2>&1
python benchmarks/point_checks.py $R/words40/results.json $R/pice-progressive/results.json \
  --out $R/point_checks_fresh.json
