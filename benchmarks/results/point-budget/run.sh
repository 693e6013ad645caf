#!/bin/bash
# Points at the server's cap, the answer cut at the limit (declared.md): the new budget against
# the old (95f83d0, from a git worktree), one fresh bench each in a drawn order, then judged.
cd "$(git rev-parse --show-toplevel)" && source .venv/bin/activate
R=${R:-benchmarks/results/point-budget}
OLD=${OLD:-/tmp/pice-old-budget}
C=benchmarks/results/edge-1.5b/bench/results.json    # cloud-only, the same machine, 2026-12-04
mkdir -p "$R"
[ -d "$OLD" ] || git worktree add --detach "$OLD" 95f83d0
bench() {  # bench NAME [env...]: one fresh pice-progressive run of the 40 suitable questions
  local name=$1; shift
  echo "$(date -u +%T) bench $name"
  env "$@" pice bench --suitable 40 --unsuitable 0 --modes pice-progressive --no-load \
    --no-judge --seed 0 --out "$R/$name" > "$R/$name.log" 2>&1
  echo "$(date -u +%T) bench $name rc=$?"
}
for name in $(printf 'new\nold\n' | shuf); do
  if [ "$name" = old ]; then
    env PYTHONPATH="$OLD/src:$OLD" python -c 'import pice_gateway; print(pice_gateway.__file__)'
    bench old PYTHONPATH="$OLD/src:$OLD"
  else
    bench new
  fi
done
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > $R/judge-server.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8200/v1/models >/dev/null && break; sleep 1; done
J="--judge-url http://127.0.0.1:8200/v1"
echo "$(date -u +%T) judge 1: new vs old"
python benchmarks/rejudge.py $R/new/results.json --baseline-results $R/old/results.json \
  --pair pice-progressive:pice-progressive $J --out $R/new_vs_old.json > $R/judge1.log 2>&1
echo "$(date -u +%T) judge 2: new vs cloud-only"
python benchmarks/rejudge.py $R/new/results.json --baseline-results $C \
  --pair pice-progressive:cloud-only $J --out $R/new_vs_cloud.json > $R/judge2.log 2>&1
echo "$(date -u +%T) judged rc=$?"
kill $SRV
python benchmarks/point_checks.py $R/old/results.json $R/new/results.json --out $R/point_checks.json
python benchmarks/by_path.py $R/new/results.json $R/new_vs_old.json \
  --pair pice-progressive:pice-progressive --baseline-results $R/old/results.json \
  --out $R/by_path_new_vs_old.json > $R/by_path_new_vs_old.md
python benchmarks/by_path.py $R/new/results.json $R/new_vs_cloud.json \
  --pair pice-progressive:cloud-only --baseline-results $C \
  --out $R/by_path_new_vs_cloud.json > $R/by_path_new_vs_cloud.md
echo "$(date -u +%T) done"
