#!/usr/bin/env bash
# bench/gpu_check.py on the GPU machine, and the wheels it needs there.
#
#   bash bench/gpu_check.sh fetch        here, once: the wheels into .whl/ (git ignores it)
#   bash bench/gpu_check.sh run [ARGS]   on the GPU machine, where $OUT is set: install the
#                                        wheels, run gpu_check.py ARGS, results and log to $OUT
#
# The device tool's call: carry [".whl"], timeout_s 540, command `bash bench/gpu_check.sh run`.
# A rerun for the stages a first run had no time for, e.g. the compiled decode reference:
#   bash bench/gpu_check.sh run --skip train_qlora,train_lora_all,train_batch4_grouped
#
# The image has Python 3.12, torch 2.11 (cu130), transformers 5.17, no bitsandbytes. Carried:
#   transformers 5.24.0   anxin's version here. 5.17's TrainingArguments has no
#                         activation_checkpointing, which anxin.train passes (TypeError); 5.24
#                         works with the image's huggingface_hub 1.33 and tokenizers 0.23.
#   peft 0.21.2           anxin's version here (the image's is unknown).
#   bitsandbytes 0.50.2   QLoRA, with a CUDA 13.0 library. Its CUDA 11/12, ROCm and XPU
#                         libraries are deleted from the wheel (43 MB -> 7 MB): what a call
#                         carries, working tree included, must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(transformers==5.24.0 peft==0.21.2 bitsandbytes==0.50.2)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)

fetch() {
    mkdir -p .whl
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]/#/--platform=}" -d .whl "${WHEELS[@]}"
    for wheel in .whl/bitsandbytes-*.whl; do
        zip -q -d "$wheel" 'bitsandbytes/libbitsandbytes_cuda1[12]*.so' \
            'bitsandbytes/libbitsandbytes_rocm*.so' 'bitsandbytes/libbitsandbytes_xpu*.so' || true
    done
    du -sh .whl
}

run() {
    : "${OUT:?run this on the GPU machine, where OUT is set}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    df -h /tmp | tail -1
    python3 bench/gpu_check.py --results-dir "$OUT" --work-dir /tmp/gpu_check "$@" 2>&1 |
        tee "$OUT/gpu_check.log"
}

case "${1:-}" in
    fetch) fetch ;;
    run) shift; run "$@" ;;
    *) echo "usage: bash bench/gpu_check.sh fetch | run [gpu_check.py arguments]" >&2; exit 2 ;;
esac
