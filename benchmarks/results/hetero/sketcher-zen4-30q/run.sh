#!/bin/bash
# eft vs least-loaded with the framed sketcher on the heterogeneous testbed, three pairs, and one
# stock pair interleaved, on a 2-core AMD EPYC Zen 4 (AVX-512, no AMX) (docs/benchmarks.md, "The
# framed sketcher on the testbed, AVX-512: three pairs"). The sketcher-30q set ran one pair on
# an AVX2-only machine whose cloud was past capacity at this rate. W: the sketcher's work
# directory; R: results.
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/hetero-sketcher-zen4-30q}
mkdir -p "$W" "$R"
# 1. The sketcher from its committed samples, as in ../sketcher-30q/run.sh step 1 (~21 min,
#    peak ~22.5 GiB). Here the exported GGUF came out byte-identical to the first build's.
cp benchmarks/results/sketcher-framed/sketch-v1.jsonl.raw.jsonl "$W/"
pice tune --workdir "$W" data --role sketcher --frame --samples 4 --threads 2
pice tune --workdir "$W" train --role sketcher --max-steps 20 --save-every 5 --val-share 0.15 \
    --threads 2
pice tune --workdir "$W" export --role sketcher
# 2. Sketcher pair 1, a stock pair, sketcher pairs 2 and 3; each pair's order drawn (~7 min a run).
Q="--suitable 30 --load-only --seed 0 --rates 0.07 --load-requests 30 --slo-seconds 600 --modes pice-progressive"
pair() {  # $1: the pair's number, $2: sketcher or stock
    for policy in $(printf "least-loaded\neft\n" | shuf); do
        if [ "$2" = sketcher ]; then
            pice bench --profile heterogeneous --placement "$policy" $Q \
                --sketch-lora "$W/sketcher-adapter.gguf" --out "$R/$policy-$1"
        else
            pice bench --profile heterogeneous --placement "$policy" $Q --out "$R/stock-$policy-$1"
        fi
    done
}
pair 1 sketcher
pair 1 stock
pair 2 sketcher
pair 3 sketcher
# 3. The tables of docs/benchmarks.md (JSON in this directory): eft against least-loaded with
#    the sketcher (every arrival, then the slots outlined in every run), per run, and the
#    slowest arrivals; the sketcher against the stock cloud on this machine (the pairs 1).
LL="$R/least-loaded-1,$R/least-loaded-2,$R/least-loaded-3" EFT="$R/eft-1,$R/eft-2,$R/eft-3"
python benchmarks/hetero_compare.py "$LL" "$EFT" --tail 3 --out "$R/compare.json" \
    --png docs/img/hetero_sketcher_zen4_tails.png \
    --labels "least-loaded x 3 (sketcher),eft x 3 (sketcher)"
python benchmarks/hetero_compare.py --outlined-only "$LL" "$EFT" --out "$R/compare-outlined.json"
python benchmarks/hetero_compare.py "$LL" $R/least-loaded-{1,2,3} $R/eft-{1,2,3} \
    --out "$R/compare-runs.json"
python benchmarks/hetero_compare.py "$R/stock-least-loaded-1" "$R/stock-eft-1" \
    "$R/least-loaded-1" "$R/eft-1" --tail 3 --out "$R/compare-stock.json"
python benchmarks/hetero_compare.py "$R/stock-least-loaded-1,$R/stock-eft-1" \
    "$R/least-loaded-1,$R/eft-1" "$LL,$EFT" --out "$R/compare-sketcher-vs-stock.json"
# 4. The burst of slots 20-26 (7 arrivals in 27 s) against the other 23 arrivals, per run.
python benchmarks/results/hetero/sketcher-zen4-30q/burst.py "$R"
