#!/bin/bash
# The trained framed sketcher served by vLLM (docs/fine-tuning.md, "The trained sketcher on
# vLLM"): the adapter rebuilt from the committed samples, vLLM started as `pice up --cloud vllm
# --sketch-lora` starts it, the same 36 held-out questions as the llama.cpp run, greedy
# sketches of both models, then the two engines compared. ~50 min on a quiet 2-core machine
# (training ~18 min and ~23 GiB; sketches ~25 min). W: work directory; R: results.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/sketcher-vllm}
mkdir -p "$W" "$R"
# 1. Data from the committed raw samples (asks nothing), then the recipe's step 20.
cp benchmarks/results/sketcher-framed/sketch-v1.jsonl.raw.jsonl "$W/"
pice tune --workdir "$W" data --role sketcher --frame --samples 4 --threads 2
pice tune --workdir "$W" train --role sketcher --max-steps 20 --save-every 5 --val-share 0.15 \
    --threads 2
pice tune --workdir "$W" export --role sketcher          # the GGUF, to compare its sha256
# 2. vLLM with the peft adapter, the arguments `pice up --sketch-lora` adds.
python - "$W/run-sketcher/adapter" 8400 > "$R/vllm.log" 2>&1 <<'PY' &
import os, sys
from dataclasses import replace
from pathlib import Path
from pice.cloud.vllm import prepare_vllm_server
from pice_stack.stack import StackSpec, cloud_lora_args
adapter, port = Path(sys.argv[1]), int(sys.argv[2])
base = prepare_vllm_server("qwen2.5-coder-1.5b-instruct", port=port, cores="0,1")
server = replace(base, extra_args=cloud_lora_args(StackSpec(cloud="vllm", sketch_lora=adapter)))
os.execvpe(server.argv()[0], server.argv(), {**os.environ, **server.env()})
PY
VLLM=$!
until curl -sf http://127.0.0.1:8400/health > /dev/null; do sleep 2; done
# 3. Greedy sketches only (one sample: vLLM on CPU decodes the adapter at ~2/3 of the base
#    model's speed, and the tempered samples would double the run).
python benchmarks/sketch_eval.py benchmarks/router/heldout.jsonl --url http://127.0.0.1:8400/v1 \
    --models stock=qwen2.5-coder-1.5b-instruct,tuned=pice-sketcher --frame --samples 1 \
    --limit 36 --seed 0 --out "$R/sketch_eval.json"
kill $VLLM; wait $VLLM || true
# 4. llama.cpp (the committed run of the same questions) against vLLM.
python benchmarks/sketch_engines.py benchmarks/router/heldout.jsonl \
    benchmarks/results/sketcher-framed/sketch_eval.raw.jsonl "$R/sketch_eval.raw.jsonl" \
    --names llama.cpp,vllm --frame --out "$R/engines.json"
# 5. Through the gateway: one question, model pice-progressive (the answer's pice.sketch).
pice up --cloud vllm --sketch-lora "$W/run-sketcher/adapter" --port 8010 > "$R/up.log" 2>&1 &
UP=$!
until curl -sf http://127.0.0.1:8010/ready > /dev/null; do sleep 5; done
curl -s http://127.0.0.1:8010/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"pice-progressive","max_tokens":400,"messages":[{"role":"user","content":"How can I make my mornings less rushed?"}]}' \
    > "$R/gateway_answer.json"
kill -INT $UP; wait $UP || true
