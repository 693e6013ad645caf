#!/bin/bash
# Run 2 (declared.md, addendum): the new budget against the old at max_tokens 512.
cd "$(git rev-parse --show-toplevel)" && source .venv/bin/activate
R=${R:-benchmarks/results/point-budget}/512
OLD=${OLD:-/tmp/pice-old-budget}
mkdir -p "$R"
[ -d "$OLD" ] || git worktree add --detach "$OLD" 95f83d0
bench() {  # bench NAME [env...]
  local name=$1; shift
  echo "$(date -u +%T) bench $name"
  env "$@" pice bench --suitable 40 --unsuitable 0 --modes pice-progressive --no-load \
    --no-judge --seed 0 --max-tokens 512 --out "$R/$name" > "$R/$name.log" 2>&1
  echo "$(date -u +%T) bench $name rc=$?"
}
for name in $(printf 'new\nold\n' | shuf); do
  if [ "$name" = old ]; then bench old PYTHONPATH="$OLD/src:$OLD"; else bench new; fi
done
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > $R/judge-server.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8200/v1/models >/dev/null && break; sleep 1; done
echo "$(date -u +%T) judge: new vs old at 512"
python benchmarks/rejudge.py $R/new/results.json --baseline-results $R/old/results.json \
  --pair pice-progressive:pice-progressive --judge-url http://127.0.0.1:8200/v1 \
  --out $R/new_vs_old.json > $R/judge.log 2>&1
echo "$(date -u +%T) judged rc=$?"
kill $SRV
python benchmarks/point_checks.py $R/old/results.json $R/new/results.json --out $R/point_checks.json
python benchmarks/by_path.py $R/new/results.json $R/new_vs_old.json \
  --pair pice-progressive:pice-progressive --baseline-results $R/old/results.json \
  --out $R/by_path_new_vs_old.json > $R/by_path_new_vs_old.md
echo "$(date -u +%T) done"
