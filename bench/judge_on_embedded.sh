#!/bin/bash
# Issue 16's "measure here": `anxin serve` on the embedded SmolLM2-135M plays judge and client for
# `anxin eval --judge` and `anxin eval simulate`. A 135M judge's scores mean nothing: this shows
# the plumbing end to end, its wall time and its call counts. Needs the SFT demo adapter
# (saves/smollm2-135m/lora/sft, from `make demo` or configs/smollm2-135m/lora_sft.yaml).
# The server answers one request at a time, ~20 s per judge answer on two cores: one call at a
# time with a long timeout (at 4 in flight and the default timeout, calls time out in the queue).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/anxin-judge}
PORT=${PORT:-8765}
mkdir -p "$OUT"
.venv/bin/python -m anxin serve --model smollm2 --port "$PORT" --max-new-tokens 256 > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
for _ in $(seq 1 120); do curl -s "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 1; done
URL=http://127.0.0.1:$PORT/v1
echo "== eval --judge"
/usr/bin/time -f "wall %e s" .venv/bin/python -m anxin eval --model smollm2 \
  --adapter saves/smollm2-135m/lora/sft \
  --data saves/smollm2-135m/lora/sft/validation.jsonl --out "$OUT/eval" --max-turns 2 --no-loss \
  --max-new-tokens 64 --judge "$URL" --judge-model smollm2 --judge-max-tokens 256 --no-progress \
  --judge-concurrency 1 --judge-timeout 300 --judge-repeats 0
echo "== eval simulate"
/usr/bin/time -f "wall %e s" .venv/bin/python -m anxin eval simulate --client "$URL" --judge "$URL" \
  --judge-model smollm2 --client-model smollm2 --model smollm2 \
  --adapter saves/smollm2-135m/lora/sft --limit 1 --turns 3 --max-new-tokens 64 \
  --client-max-tokens 64 --judge-max-tokens 256 --out "$OUT/simulate" --no-progress \
  --concurrency 1 --timeout 300
