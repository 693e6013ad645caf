#!/bin/bash
# The second preference round (docs/fine-tuning.md, "A second preference round"): the second
# trained edge rebuilt from its committed data, pairs of its own candidates with score pairs
# length-matched, one DPO pass on top of it, then both edges benchmarked and judged.
# About 2 hours on a quiet 2-core machine. W: work directory; R: results.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/preference-v2}
mkdir -p "$W" "$R"
cp benchmarks/results/tuned-edge-v2/data-v2.jsonl* "$W"/
# 1. The second trained edge again (byte-identical adapter, sha256 b71137ac...; ~20 min).
pice tune --workdir "$W" train --data "$W/data-v2.jsonl" --max-steps 70 --threads 2 \
    --save-every 10 --val-share 0.15
pice tune --workdir "$W" export
# 2. Outlines: the teacher's, as data-v2.jsonl records them (the raw cache of its data step is
#    not committed; questions whose every point was filtered have no outline here).
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
# 3. Pairs from an edge serving the adapter (~7 min).
pice edge serve --model qwen2.5-coder-0.5b-instruct-q8_0 --lora "$W/adapter.gguf" --port 8310 \
    --threads 2 > "$R/edge-lora.log" 2>&1 &
EDGE=$!
until curl -sf http://127.0.0.1:8310/ready > /dev/null; do sleep 2; done
pice tune --workdir "$W" data --role preference --outlines "$W/outlines-v2.jsonl" --limit 80 \
    --length-ratio 0.75 --edge-url http://127.0.0.1:8310 --out "$W/pairs-v2.jsonl" --threads 2
kill -INT $EDGE; wait $EDGE || true
# 4. One DPO pass on top of the adapter (~45 min).
pice tune --workdir "$W" train --role preference --data "$W/pairs-v2.jsonl" --max-steps 34 \
    --val-share 0.15 --save-every 10 --init-adapter "$W/run/adapter" --threads 2
pice tune --workdir "$W" export --role preference
# 5. Both edges on the same 40 suitable questions, in a drawn order (~20 min).
Q="--suitable 40 --modes pice-progressive --no-load --no-judge --seed 0"
for m in $(printf "tuned\ndpo\n" | shuf); do
    if [ "$m" = tuned ]; then A=$W/adapter.gguf; else A=$W/preference-adapter.gguf; fi
    pice bench $Q --edge-lora "$A" --out "$R/$m"
done
python benchmarks/point_checks.py "$R/tuned/results.json" "$R/dpo/results.json" \
    --out "$R/point_checks.json"
# 6. The judge (the 1.5B cloud model; ~15 min).
pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 > "$R/judge.log" 2>&1 &
JUDGE=$!
until curl -sf http://127.0.0.1:8200/ready > /dev/null; do sleep 2; done
python benchmarks/rejudge.py "$R/dpo/results.json" --baseline-results "$R/tuned/results.json" \
    --pair pice-progressive:pice-progressive --judge-url http://127.0.0.1:8200/v1 \
    --out "$R/dpo_vs_tuned.json"
kill -INT $JUDGE; wait $JUDGE || true
