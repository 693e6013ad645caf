#!/bin/bash
# A preference round on the judge's verdicts (docs/fine-tuning.md, "A preference round on the
# judge's verdicts"): the second preference round's candidates again, the 1.5B judge asked
# about every point the data filters leave open, one DPO pass on the pairs it orients, then
# the round benchmarked and judged against the tuned edge it started from.
# About 2 hours on a quiet 2-core machine. W: work directory; R: results.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/preference-judge}
mkdir -p "$W" "$R"
cp benchmarks/results/tuned-edge-v2/data-v2.jsonl* "$W"/
# 1. The second trained edge again (byte-identical adapter, sha256 b71137ac...; ~20 min).
pice tune --workdir "$W" train --data "$W/data-v2.jsonl" --max-steps 70 --threads 2 \
    --save-every 10 --val-share 0.15
pice tune --workdir "$W" export
# 2. Outlines and candidates exactly as the second preference round's (its run.sh, steps 2-3):
#    the score's pairs come out as benchmarks/results/preference-v2/pairs-v2.jsonl.
python - "$W" <<'PY'
import json, sys
w = sys.argv[1]
seen = {}
for line in open(f"{w}/data-v2.jsonl"):
    row = json.loads(line)
    seen.setdefault(row["question_id"], row["sketch"])
with open(f"{w}/outlines-v2.jsonl.raw.jsonl", "w") as out:
    for qid, titles in seen.items():
        out.write(json.dumps({"question_id": qid, "titles": titles}) + "\n")
open(f"{w}/outlines-v2.jsonl", "a").close()
PY
pice edge serve --model qwen2.5-coder-0.5b-instruct-q8_0 --lora "$W/adapter.gguf" --port 8310 \
    --threads 2 > "$R/edge-lora.log" 2>&1 &
EDGE=$!
until curl -sf http://127.0.0.1:8310/ready > /dev/null; do sleep 2; done
E="--outlines $W/outlines-v2.jsonl --limit 80 --length-ratio 0.75 --edge-url http://127.0.0.1:8310"
pice tune --workdir "$W" data --role preference $E --out "$W/pairs-v2.jsonl" --threads 2
kill -INT $EDGE; wait $EDGE || true
cmp "$W/pairs-v2.jsonl" benchmarks/results/preference-v2/pairs-v2.jsonl \
    && echo "score pairs: identical to the second round's" || echo "score pairs: they differ"
# 3. The judge (the 1.5B cloud model, also the teacher) on every open point (~15 min), then
#    the pairs it orients, from the same candidates (no edge is asked: the cache is complete).
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > "$R/judge.log" 2>&1 &
JUDGE=$!
until curl -sf http://127.0.0.1:8200/ready > /dev/null; do sleep 2; done
python benchmarks/judge_candidates.py "$W/pairs-v2.jsonl" --length-ratio 0.75 \
    --judge-url http://127.0.0.1:8200/v1 --out "$R/verdicts.jsonl"
cp "$W/pairs-v2.jsonl.raw.jsonl" "$W/pairs-judge.jsonl.raw.jsonl"
pice tune --workdir "$W" data --role preference $E --out "$W/pairs-judge.jsonl" \
    --verdicts "$R/verdicts.jsonl"
cp "$W"/pairs-judge.jsonl* "$R"/ && rm "$R/pairs-judge.jsonl.raw.jsonl"
kill -INT $JUDGE; wait $JUDGE || true
# 4. One DPO pass on top of the adapter, as the second round's (steps: training pairs / 4).
STEPS=${STEPS:?one pass: the training pairs of pairs-judge.jsonl / 4, rounded up}
pice tune --workdir "$W" train --role preference --data "$W/pairs-judge.jsonl" \
    --max-steps "$STEPS" --val-share 0.15 --save-every 10 --init-adapter "$W/run/adapter" --threads 2
pice tune --workdir "$W" export --role preference
# 5. Both edges on the same 40 suitable questions, in a drawn order (~20 min).
Q="--suitable 40 --modes pice-progressive --no-load --no-judge --seed 0"
for m in $(printf "tuned\ndpo-judge\n" | shuf | tee "$R/order.txt"); do
    if [ "$m" = tuned ]; then A=$W/adapter.gguf; else A=$W/preference-adapter.gguf; fi
    pice bench $Q --edge-lora "$A" --out "$R/$m"
done
python benchmarks/point_checks.py "$R/tuned/results.json" "$R/dpo-judge/results.json" \
    --out "$R/point_checks.json"
# 6. The judge on the answers (~15 min).
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > "$R/judge.log" 2>&1 &
JUDGE=$!
until curl -sf http://127.0.0.1:8200/ready > /dev/null; do sleep 2; done
python benchmarks/rejudge.py "$R/dpo-judge/results.json" --baseline-results "$R/tuned/results.json" \
    --pair pice-progressive:pice-progressive --judge-url http://127.0.0.1:8200/v1 \
    --out "$R/dpo_vs_tuned.json"
kill -INT $JUDGE; wait $JUDGE || true
