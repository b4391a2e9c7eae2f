#!/usr/bin/env bash
# The GPU path in one run (issue 12 item 4), sized for a lent GPU machine's few minutes: the CUDA tests, then the
# model, sparsity and layer benchmarks on the GPU. Every step has its own time limit and writes its results as
# it goes, so a step that runs out keeps what it measured and the next one still runs.
#
#   OUT=/some/dir PYG_SPARSE_STGCN_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/gpu_check.sh
#
# Writes into $OUT (default benchmarks/results/gpu): gpu_check.log (everything), pytest_cuda.log,
# models_cuda.json, models_compile_cuda.json, sparsity_cuda.json, layers_cuda.json; copy the JSON files to
# benchmarks/results/ to commit them. Needs torch with CUDA, torch_geometric, pytest and hypothesis installed;
# the library runs from this checkout (PYTHONPATH), torch-sparse / torch-scatter are optional.
# LIMIT scales every step's time limit (default 1: 500 s in all, inside one 600-s device command).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
LIMIT=${LIMIT:-1}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

step() {  # step NAME SECONDS COMMAND...: run COMMAND under a time limit, report its status and time
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name (limit $(( limit * LIMIT )) s): $*"
    timeout --signal=INT --kill-after=15 $(( limit * LIMIT )) "$@"
    echo "=== $name: exit $? after $(( SECONDS - start )) s"
}

step environment 20 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; \
  $PY -c 'import torch, torch_geometric as g; print(torch.__version__, torch.version.cuda, g.__version__, \
  torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported())'"
# the tests marked cuda (they skip on a machine without one), then every other test touching CUDA by name
step cuda-tests 120 "$PY" -m pytest -q -m cuda -p no:cacheprovider --junitxml="$OUT/pytest_cuda.xml" \
  tests 2>&1 | tee "$OUT/pytest_cuda.log"
# whole models, eager, fp32 / bf16 / fp16 at N = 64 (a GPU batch; the CPU benchmark runs N = 8)
step models 130 "$PY" benchmarks/bench_models.py --device cuda --models all --batch 64 --rounds 5 --memory train \
  --out "$OUT/models_cuda.json"
# compiled inference of ST-GCN++ (every compile takes tens of seconds: three here, ours and the reference's two)
step models-compile 120 "$PY" benchmarks/bench_models.py --device cuda --models stgcn++ --shapes ntu --batch 64 \
  --rounds 5 --memory none --compile inference --out "$OUT/models_compile_cuda.json"
# sparse inference (the exported ST-GCN on torch's CUDA sparse kernels) against the eager and folded dense paths
# (compiling the dense model per batch size would not fit the time: the compiled dense path is left out here)
step sparsity 70 "$PY" benchmarks/bench_sparsity.py --device cuda --batches 1,8,64 --sections grid,generator \
  --no-compile --out "$OUT/sparsity_cuda.json"
step layers 40 "$PY" benchmarks/bench_layers.py --devices cuda --out "$OUT/layers_cuda.json"
echo "=== done; files in $OUT:"
ls -l "$OUT"
