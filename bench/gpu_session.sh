#!/usr/bin/env bash
# Every check and benchmark that needs a CUDA device, in one go (about 9 minutes on one H200):
#   1. two DCDM trainings on the device (nncert dcdm-train --device cuda, time-limited) while
#   2. the GPU-marked tests run;
#   3. solvers at 128^3: our CG on the CPU and on the device, DCDM on the device, PyAMG on the CPU;
#   4. the freshly trained models against the shipped one (DCDM on the device at 64^3 and 128^3);
#   5. bench/gpu_bench.py: bounds, Lipschitz, verification and convex training, core vs torch.
# usage: NNCERT_DATA=... bench/gpu_session.sh OUTDIR 2>&1 | tee OUTDIR/session.log
# Every step runs under its own time limit, so one slow step cannot eat the others; OUTDIR gets
# the solver JSONs and the trained models.
set -u
OUT=${1:?usage: gpu_session.sh OUTDIR}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS CMD...
    local name=$1 limit=$2 t=$SECONDS
    shift 2
    echo "=== $name (limit ${limit}s) at $(date -u +%T)"
    timeout --kill-after=5 "$limit" "$@"
    echo "=== $name: rc=$? in $((SECONDS - t))s"
}

echo "=== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
$PY -c "import torch, numpy, scipy, nncert; print('torch', torch.__version__, torch.cuda.get_device_name(0), \
'numpy', numpy.__version__, 'scipy', scipy.__version__, 'nncert', nncert.__version__)"

# 1. training in the background (model A: the shipped architecture on a larger grid; model B: wider, larger grid)
TRAIN_LIMIT=${TRAIN_LIMIT:-140}
$PY -m nncert.cli dcdm-train --device cuda --grid 32 --layouts 8 --ritz 400 --channels 12 --steps 3000 \
    --batch 16 --threads 8 --time-limit "$TRAIN_LIMIT" --out /tmp/dcdm_a.pt > /tmp/train_a.log 2>&1 &
TA=$!
$PY -m nncert.cli dcdm-train --device cuda --grid 48 --layouts 6 --ritz 300 --channels 16 --steps 2000 \
    --batch 8 --threads 8 --time-limit "$TRAIN_LIMIT" --out /tmp/dcdm_b.pt > /tmp/train_b.log 2>&1 &
TB=$!

# 2. the GPU tests (concurrently with the training: correctness only, no timings)
step gpu-tests 150 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_torch_lipschitz.py \
    tests/test_torch_bounds.py tests/test_network.py tests/test_torch_convex.py tests/test_torch_verify.py \
    tests/test_solvers_dcdm.py tests/test_solvers.py

wait $TA $TB
for m in a b; do
    echo "=== training $m"
    tr '\r' '\n' < /tmp/train_$m.log | grep -v '^dcdm-train: ' | tail -n 5
    tr '\r' '\n' < /tmp/train_$m.log | grep '^dcdm-train: ' | tail -n 1
    cp /tmp/dcdm_$m.pt "$OUT/" 2>/dev/null
done

# 3. solvers at 128^3, nothing else on the device
step solvers-128 110 $PY bench/solvers_bench.py --sizes 128 --device cuda --methods cg,cg-gpu,dcdm-gpu,pyamg \
    --json "$OUT/solvers_gpu_128.json"

# 4. the new models against the shipped one
for m in a b; do
    [ -f "$OUT/dcdm_$m.pt" ] && step "model-$m" 45 $PY bench/solvers_bench.py --sizes 64 128 --device cuda \
        --methods cg-gpu,dcdm-gpu --model "$OUT/dcdm_$m.pt" --json "$OUT/solvers_model_$m.json"
done

# 5. GPU offload benchmark (core vs torch in the same run)
step gpu-bench 40 $PY bench/gpu_bench.py --device cuda --only bounds lipschitz
step gpu-verify 80 $PY bench/gpu_bench.py --device cuda --only verify --timeout 8
step gpu-convex 70 $PY bench/gpu_bench.py --device cuda --only convex --convex-iters 10
echo "=== done at $(date -u +%T)"
