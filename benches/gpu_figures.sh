#!/usr/bin/env bash
# The GPU figures of README (issue 19) in one call on a lent GPU machine:
# the GPU tests, the scoring benchmark at the target sizes, `embed` with
# ViT-L-14 against its pure forward rate, and a profile of the scoring.
#
#   bash benches/gpu_figures.sh                      # on the GPU machine; logs under $OUT
#   GPU_FIGURES_SMALL=1 bash benches/gpu_figures.sh  # tiny sizes on a CPU: checks the script
#
# Expects in .whl/ (ignored by git, carried to the machine): the zcore_fast
# wheel (maturin build --release), the wheels the machine's image lacks
# (open_clip_torch, ftfy, wcwidth) and Fashion-MNIST's
# t10k-images-idx3-ubyte.gz (apt-get download dataset-fashion-mnist). They
# are installed into $GPU_FIGURES_SITE (default /tmp/site), and the torch
# backend's Python files of this tree are laid over the wheel's.
#
# Every step has its own time limit, cut to what is left of
# $GPU_FIGURES_BUDGET seconds (default 420), so one slow step cannot eat the
# others; $GPU_FIGURES_STEPS picks and orders the steps (see run_step). The
# last lines printed are the table rows of every log.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SITE=${GPU_FIGURES_SITE:-/tmp/site}
BUDGET=${GPU_FIGURES_BUDGET:-420}
SMALL=${GPU_FIGURES_SMALL:-0}

# step NAME LIMIT COMMAND...: runs COMMAND with its output in $OUT/NAME.log,
# for at most LIMIT seconds and never past the budget.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - SECONDS - 5))
    if ((left < 15)); then
        echo "== $name: skipped, ${left}s of the budget left" | tee -a "$OUT/$name.log"
        return
    fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit}s, ${SECONDS}s so far): $*" | tee -a "$OUT/$name.log"
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start))s$( ((rc == 124)) && echo ' (TIMED OUT)')" |
        tee -a "$OUT/$name.log"
}

mkdir -p "$SITE"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 1
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
cp python/zcore_fast/backends/*.py "$SITE/zcore_fast/backends/" || exit 1
FMNIST=.whl/t10k-images-idx3-ubyte.gz

info() {
    nvidia-smi || echo "no nvidia-smi"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit \
        --format=csv 2>/dev/null
    lscpu | grep -E "Model name|^CPU\(s\)" || true
    free -g | head -2
    $PY - <<'EOF'
import platform, numpy, torch, zcore_fast
print("python", platform.python_version(), "numpy", numpy.__version__, "torch", torch.__version__,
      "cuda", torch.version.cuda, "zcore_fast", zcore_fast.__file__)
for name in ("triton", "open_clip", "timm", "PIL"):
    try:
        print(name, __import__(name).__version__)
    except Exception as e:
        print(name, "missing:", e)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, p.multi_processor_count, "SMs", round(p.total_memory / 2**30), "GiB")
EOF
}

if [ "$SMALL" = 1 ]; then  # a CPU check of this script: the same steps on tiny sizes
    export ZCORE_GPU_TEST_DEVICE=cpu TRITON_INTERPRET=1
    TESTS=(tests/test_gpu.py -k "not triton and not same_bits")
    SCORE_IN=(--n 3000 --d 32 --samples 2000 --baseline-samples 200 --check-rows 2000
        --check-samples 200)
    SCORE_CIFAR=(--n 2000 --d 32 --samples 2000 --baseline-samples 200 --check-samples 200)
    WIDE=(--n 20000 --d 8 --samples 500 --baseline-samples 50 --check-rows 2000
        --check-samples 100)
    EMBED=(--gpu-n 300 --gpu-model timm:vit_tiny_patch16_224 --gpu-device cpu
        --gpu-precision fp32 --gpu-batch-size 32 --gpu-workers 2)
    PROFILE=(--n 3000 --d 32 --profile 1000)
    SCORE_OLD=(--n 3000 --d 32 --samples 1000)
else
    TESTS=(tests/test_gpu.py tests/test_backend_torch_api.py)
    SCORE_IN=(--n 1281167 --d 1280 --samples 1000000 --baseline-samples 20000
        --baseline-seconds 8 --check-samples 20000)
    SCORE_CIFAR=(--n 50000 --d 1280 --samples 1000000 --baseline-samples 20000
        --baseline-seconds 8 --check-samples 20000)
    WIDE=(--n 10000000 --d 64 --samples 200000 --baseline-samples 2000 --baseline-seconds 5)
    # shellcheck disable=SC2206 # a list of worker counts
    EMBED=(--gpu-n 10000 --gpu-workers ${GPU_FIGURES_EMBED_WORKERS:-16 12})
    PROFILE=(--n 1281167 50000 --d 1280 --profile 20000)
    SCORE_OLD=(--n 1281167 --d 1280 --samples 200000)
fi

export PY
export -f info
# run_step NAME: one step of the list $GPU_FIGURES_STEPS (default: all but
# score_batch517, in this order); a rerun names only what it needs.
run_step() {
    case $1 in
    info) step info 40 bash -c info ;;
    tests) step tests 110 $PY -m pytest -q -p no:cacheprovider -rs "${TESTS[@]}" ;;
    score_cifar) step score_cifar 60 $PY benches/bench_torch.py "${SCORE_CIFAR[@]}" ;;
    score_imagenet) step score_imagenet 130 $PY benches/bench_torch.py "${SCORE_IN[@]}" ;;
    score_batch517) # the batch size the backend chose at N = 1,281,167 before batches were
        # sized for the fused kernels (it counted plain PyTorch's (S, N) tensors)
        step score_batch517 60 $PY benches/bench_torch.py "${SCORE_OLD[@]}" --batch-size 517 \
            --baseline-samples 0 --check-samples 0 ;;
    embed) step embed 150 $PY benches/bench_embed.py --gpu-only --cache /tmp/zcf_embed \
        --fmnist "$FMNIST" --repeats 1 "${EMBED[@]}" ;;
    score_wide) step score_wide 90 $PY benches/bench_torch.py "${WIDE[@]}" ;;
    profile) step profile 60 $PY benches/bench_torch.py "${PROFILE[@]}" \
        --profile-out /tmp/zcf_profile.txt ;;
    *) echo "unknown step $1" ;;
    esac
}

for name in ${GPU_FIGURES_STEPS:-info tests score_cifar score_imagenet embed score_wide profile}; do
    run_step "$name"
done

# The table rows of every log, last (a call's reply carries the end of the output).
echo "# summary (${SECONDS}s in all)"
grep -h -E "^(device|python|triton|open_clip|Model name|name,|NVIDIA)" "$OUT/info.log" 2>/dev/null
grep -h -E "passed|failed|error" "$OUT/tests.log" 2>/dev/null | tail -3
for f in score_cifar score_imagenet score_batch517 embed score_wide; do
    [ -f "$OUT/$f.log" ] || continue
    echo "## $f"
    grep -h -E "^\||^N = |^wrote|^== .*exit" "$OUT/$f.log"
done
grep -h -E "^N = |^== .*exit" "$OUT/profile.log" 2>/dev/null || true
