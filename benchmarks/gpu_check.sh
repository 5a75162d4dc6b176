#!/usr/bin/env bash
# The GPU checks of issue 19 as one command on a GPU machine with no registry (prepare with gpu_prep.py and carry
# .gpu): install the carried wheels (evalsuite's own among them), then the gpu-marked and CUDA-path tests and gpu_bench.py.
# Everything it measures lands in $OUT (default ./gpu-out). Usage: bash benchmarks/gpu_check.sh [DEADLINE_S]
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
deadline=${1:-420}
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
  || { echo "wheel install failed"; exit 3; }
export PYTHONPATH=/tmp/site
imports="import torch, transformers, peft, trl, datasets, bitsandbytes; print(torch.__version__, torch.cuda.is_available(), transformers.__version__, trl.__version__, bitsandbytes.__version__)"
if ! python3 -c "$imports"; then
  echo "the carried transformers does not import here: using the image's own"
  rm -rf /tmp/site/transformers /tmp/site/transformers-*
  python3 -c "$imports" || exit 4
fi
# Run from a copy without the package sources, so that `import evalsuite` finds the installed wheel (whose
# evalsuite.trainers / .probes / .fixtures are mapped from the top-level folders) and not ./evalsuite.
run=/tmp/evalsuite-run
rm -rf "$run" && mkdir -p "$run" && cp -r tests benchmarks conftest.py pyproject.toml .gpu "$run"/ && cd "$run" || exit 5
export PYTHONPATH=/tmp/site:$run/benchmarks
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1
left=$(( deadline - ($(date +%s) - start) - 60 ))
# shellcheck disable=SC2086  # GPU_BENCH_ARGS: extra options, e.g. "--quick" for a CPU rehearsal of this script
python3 benchmarks/gpu_bench.py --tokenizer .gpu/llama32-tok --out "$OUT" --deadline-s "$left" ${GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
# the gpu-marked tests and the trainer's quantized paths on CUDA, with what time is left
left=$(( deadline - ($(date +%s) - start) ))
if [ "$left" -gt 20 ]; then
  timeout "$left" python3 -m pytest -q -p no:cacheprovider -m "gpu or slow" tests/test_backends_vllm.py \
    tests/test_train.py -k "vllm or qlora or 8bit or complete_and_loads or dtype" -rs 2>&1 | tee "$OUT/pytest.log"
fi
echo "gpu_check: done in $(( $(date +%s) - start )) s"
