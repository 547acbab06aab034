#!/usr/bin/env bash
# Every check and benchmark that needs a CUDA device, in one go (about 8 minutes on one H200):
#   1. a DCDM training on the device with the shipped model's recipe (nncert dcdm-train --device cuda,
#      time-limited) while
#   2. the GPU-marked tests run;
#   3. solvers at 128^3 and 256^3: our CG on the CPU and on the device, DCDM on the device, PyAMG on the CPU
#      (128^3 only: it takes minutes at 256^3);
#   4. the freshly trained model (DCDM on the device at 64^3 and 128^3), to compare with the shipped one;
#   5. bench/gpu_bench.py: bounds, Lipschitz, verification and convex training, core vs torch;
#   6. with VERIFY_FULL_LIMIT=SECONDS (default 0: skipped): the full ACAS Xu (186) and MNIST 256x2 (30) sets,
#      core (competition timeouts) and then the torch path on the device (a quarter of them) per instance, one row
#      per instance as it finishes (bench/verify_bench.py --device cuda); give it what is left of the budget.
# usage: NNCERT_DATA=... bench/gpu_session.sh OUTDIR 2>&1 | tee OUTDIR/session.log
# Within a 15-minute device budget (the machine's start counts too), skip the training and run a sample of the
# full sets at a tenth of the competition timeouts:
#   TRAIN_LIMIT=0 VERIFY_FULL_LIMIT=200 VERIFY_ACAS=40 VERIFY_MNIST=10 VERIFY_SCALE=0.1 VERIFY_DEVICE_SCALE=0.1 \
#       ONLY="gpu-tests gpu-bench gpu-verify solvers-256 verify-full" bench/gpu_session.sh OUT
# (ONLY: the steps to run, by name; those five have limits summing to 560 s, under one 600 s device command)
# On the H100 of 2026-11-26 (bench/results/gpu-2026-11-26-h100/) the steps ran as several short commands instead,
# carrying python/nncert/_core.abi3.so, the z3 (and scs) wheels and the data files the steps read: all three
# wheels with the data exceed the 64 MiB a command may carry. The full ACAS Xu set at VERIFY_SCALE=0.1 took 110 s
# there, the 30 MNIST 256x2 instances at 0.25 36 s.
# (VERIFY_DEVICE_SCALE: the torch path's share of the competition timeouts; default a quarter of VERIFY_SCALE)
# Needs: the built package (python/nncert/_core*.so), torch with CUDA, numpy, scipy, onnx, tqdm, pytest,
# hypothesis, z3-solver, scs and pyamg (cvxpy is not needed). The benchmark data subset it reads: ACAS Xu nets
# 1_1, 2_1, 3_3, 1_9, 4_5 with props 1-4 and 7, MNIST 256x2 and 256x6 with 4 props, lipschitz/8fc_128, and
# vnncomp2021/test.
# Every step runs under its own time limit, so one slow step cannot eat the others; OUTDIR gets
# the solver JSONs and the trained models.
set -u
OUT=${1:?usage: gpu_session.sh OUTDIR}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS CMD... (skipped when ONLY is set and does not name it)
    local name=$1 limit=$2 t=$SECONDS
    shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
        echo "=== $name: skipped (ONLY=$ONLY)"
        return
    fi
    echo "=== $name (limit ${limit}s) at $(date -u +%T)"
    timeout --kill-after=5 "$limit" "$@"
    echo "=== $name: rc=$? in $((SECONDS - t))s"
}

echo "=== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
$PY -c "import torch, numpy, scipy, nncert; print('torch', torch.__version__, torch.cuda.get_device_name(0), \
'numpy', numpy.__version__, 'scipy', scipy.__version__, 'nncert', nncert.__version__)"

# 1. training in the background: the TrainConfig defaults are the shipped model's recipe (TRAIN_LIMIT=0: skipped)
TRAIN_LIMIT=${TRAIN_LIMIT:-150}
TRAIN=
if [ "$TRAIN_LIMIT" -gt 0 ]; then
    $PY -m nncert.cli dcdm-train --device cuda --threads 8 --time-limit "$TRAIN_LIMIT" --out /tmp/dcdm_fresh.pt \
        > /tmp/train.log 2>&1 &
    TRAIN=$!
fi

# 2. the GPU tests (concurrently with the training: correctness only, no timings)
step gpu-tests 150 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_torch_lipschitz.py \
    tests/test_torch_bounds.py tests/test_network.py tests/test_torch_convex.py tests/test_torch_verify.py \
    tests/test_solvers_dcdm.py tests/test_solvers.py

if [ -n "$TRAIN" ]; then
    wait $TRAIN
    echo "=== training"
    tr '\r' '\n' < /tmp/train.log | grep -v '^dcdm-train: ' | tail -n 5
    tr '\r' '\n' < /tmp/train.log | grep '^dcdm-train: ' | tail -n 1
    cp /tmp/dcdm_fresh.pt "$OUT/" 2>/dev/null
fi

# 3. solvers, nothing else on the device
step solvers-128 110 $PY bench/solvers_bench.py --sizes 128 --device cuda --methods cg,cg-gpu,dcdm-gpu,pyamg \
    --json "$OUT/solvers_gpu_128.json"
step solvers-256 90 $PY bench/solvers_bench.py --sizes 256 --device cuda --methods cg,cg-gpu,dcdm-gpu \
    --json "$OUT/solvers_gpu_256.json"

# 4. the fresh model (compare with the shipped one's rows above)
[ -f "$OUT/dcdm_fresh.pt" ] && step model-fresh 45 $PY bench/solvers_bench.py --sizes 64 128 --device cuda \
    --methods dcdm-gpu --model "$OUT/dcdm_fresh.pt" --json "$OUT/solvers_model_fresh.json"

# 5. GPU offload benchmark (core vs torch in the same run)
step gpu-bench 40 $PY bench/gpu_bench.py --device cuda --only bounds lipschitz
step gpu-verify 80 $PY bench/gpu_bench.py --device cuda --only verify --timeout 8
step gpu-convex 60 $PY bench/gpu_bench.py --device cuda --only convex --convex-n 20000 --convex-iters 10
step gpu-convex-60k 30 $PY bench/gpu_bench.py --device cuda --only convex --convex-iters 10 --convex-skip-core
# 6. the full verification sets, core vs device per instance (optional: needs the whole ACAS Xu and MNIST data)
VERIFY_FULL_LIMIT=${VERIFY_FULL_LIMIT:-0}
VERIFY_SCALE=${VERIFY_SCALE:-1}
[ "$VERIFY_FULL_LIMIT" -gt 0 ] && step verify-full "$VERIFY_FULL_LIMIT" $PY bench/verify_bench.py \
    --acas "${VERIFY_ACAS:-186}" --mnist "${VERIFY_MNIST:-30}" --timeout-scale "$VERIFY_SCALE" \
    --device-timeout-scale "${VERIFY_DEVICE_SCALE:-$(python3 -c "print($VERIFY_SCALE / 4)")}" --z3 0 --device cuda \
    --output "$OUT/verify_full_gpu.csv"
echo "=== done at $(date -u +%T)"
