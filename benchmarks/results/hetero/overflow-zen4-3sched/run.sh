#!/bin/bash
# eft, eft + cloud overflow and least-loaded with the framed sketcher on the heterogeneous
# testbed, on a 2-core AMD EPYC Zen 4 (AVX-512, no AMX) (docs/benchmarks.md, "Cloud overflow
# and eft on three schedules, AVX-512"): three interleaved rounds on schedule 0 (the one every
# earlier set used), then one run per policy on schedules 1 and 2 (`--seed`). Each round's
# order was drawn with Python's random.Random (seeds 39 and 3902): order-*.txt. W: the
# sketcher's work directory (../sketcher-zen4-30q/run.sh step 1 builds it); R: results
# (the runs' results.json and results.md are kept in this directory: R=$D reruns step 3 alone).
set -euo pipefail
W=${W:-tune-work} R=${R:-bench-results/hetero-overflow-zen4-3sched}
D=benchmarks/results/hetero/overflow-zen4-3sched
mkdir -p "$R"
Q="--suitable 30 --load-only --rates 0.07 --load-requests 30 --slo-seconds 600 --modes pice-progressive"
bench() {  # $1: policy (least-loaded, eft or eft-overflow), $2: schedule, $3: output name
    local placement=$1 env=()
    [ -f "$R/$3/results.json" ] && return 0  # already run
    if [ "$1" = eft-overflow ]; then placement=eft env=(PICE_PROGRESSIVE__CLOUD_OVERFLOW__ENABLED=true); fi
    env "${env[@]}" pice bench --profile heterogeneous --placement "$placement" --seed "$2" $Q \
        --sketch-lora "$W/sketcher-adapter.gguf" --out "$R/$3"
}
# 1. Schedule 0, three rounds (~7 min a run).
while read -r round policies; do
    for policy in $policies; do bench "$policy" 0 "$policy-$round"; done
done < "$D/order-schedule0.txt"
# 2. Schedules 1 and 2, one run per policy (~9 min a run: their 30 arrivals span ~520 s).
while read -r seed policies; do
    for policy in $policies; do bench "$policy" "$seed" "seed$seed-$policy"; done
done < "$D/order-schedules12.txt"
# 3. The tables of docs/benchmarks.md (JSON in this directory).
LL="$R/least-loaded-1,$R/least-loaded-2,$R/least-loaded-3" EFT="$R/eft-1,$R/eft-2,$R/eft-3"
OV="$R/eft-overflow-1,$R/eft-overflow-2,$R/eft-overflow-3"
python benchmarks/hetero_compare.py "$LL" "$EFT" "$OV" --tail 3 --out "$D/compare-schedule0.json"
for seed in 1 2; do
    python benchmarks/hetero_compare.py "$R/seed$seed-least-loaded" "$R/seed$seed-eft" \
        "$R/seed$seed-eft-overflow" --tail 3 --out "$D/compare-schedule$seed.json"
done
# Three schedules, one run per policy each (round 1 of schedule 0): every schedule weighs alike.
three() { echo "$R/$1-1,$R/seed1-$1,$R/seed2-$1"; }
python benchmarks/hetero_compare.py "$(three least-loaded)" "$(three eft)" "$(three eft-overflow)" \
    --out "$D/compare-3sched.json" --png docs/img/hetero_overflow_3sched.png \
    --labels "least-loaded,eft,eft + overflow"
# Schedule 0 over both sessions: the three pairs of ../sketcher-zen4-30q (four hours earlier)
# with this directory's three rounds; the previous session's overflow runs (s38-eft-overflow-*,
# after its pairs, not interleaved) with this one's.
S=benchmarks/results/hetero/sketcher-zen4-30q
python benchmarks/hetero_compare.py "$S/least-loaded-1,$S/least-loaded-2,$S/least-loaded-3,$LL" \
    "$S/eft-1,$S/eft-2,$S/eft-3,$EFT" "$D/s38-eft-overflow-1,$D/s38-eft-overflow-2,$D/s38-eft-overflow-3,$OV" \
    --out "$D/compare-schedule0-both-sessions.json"
