#!/usr/bin/env bash
# Every figure of issue 12 in one table: kit, the reference measured right after it in the same sitting, the ratio,
# and the targets. Runs the generate, lora_step and train_step benches (about 15 minutes on 2 cores; the reference
# columns need kit/benches/reference/pytorch.sh and kit/benches/reference/llama_cpp.sh to have run once).
# Run on an idle machine: bash kit/benches/summary.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
rows="$(mktemp)"
trap 'rm -f "$rows"' EXIT
for bench in generate lora_step train_step; do
    KIT_BENCH_SUMMARY="$rows" cargo bench -q -p kit --bench "$bench" > "target/bench-$bench.log"
    echo "($bench: full tables in target/bench-$bench.log)" >&2
done
echo
grep -m1 "threads" target/bench-generate.log || true
echo
echo "| figure | kit | reference, same sitting | kit / reference | must reach | goal |"
echo "|---|---|---|---|---|---|"
cat "$rows"
