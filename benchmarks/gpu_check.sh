#!/usr/bin/env bash
# The checks that need a GPU, in one script that a lent GPU machine runs in under 8 minutes:
# the generator benchmark in fp16 (eager, and torch.compile with CUDA graphs), the vocoder on the
# GPU, and an end-to-end stream with the real SD 1.5 architecture (random weights). Prints
# everything and writes a copy of the figures to $OUT (default: artifacts/gpu-check/).
#
# The GPU machine reaches no network and its Python (3.12, with torch, transformers, accelerate,
# peft, safetensors) lacks diffusers and a few small packages. Fetch their wheels first, here:
#
#     bash benchmarks/gpu_check.sh prepare        # -> artifacts/gpu-wheels/ (ignored by git)
#
# then run this script there with that folder carried along (the device tool's carry option):
#
#     bash benchmarks/gpu_check.sh                # on the GPU machine, repository root as cwd
#
# Each step has its own time limit (270 + 45 + 60 + 75 s at most, about 8 minutes with start-up),
# so one slow step cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WHEELS=artifacts/gpu-wheels
# Versions known to work with this code (the ones in the development virtualenv).
# open_clip_torch only provides CLIP's BPE vocabulary file for the tokenizer; it is never imported.
PACKAGES=(diffusers==0.42.1 open_clip_torch==3.3.0 websockets==17.4 soundfile==0.14.0
          cffi==2.1.1 pycparser==3.12)

if [ "${1:-}" = "prepare" ]; then
  python=${PYTHON:-$ROOT/.venv/bin/python}
  mkdir -p "$WHEELS"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "${PACKAGES[@]}"
  ls -la "$WHEELS"
  echo "now run benchmarks/gpu_check.sh on the GPU machine, carrying $WHEELS"
  exit 0
fi

OUT=${OUT:-$ROOT/artifacts/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
started=$(date +%s)
step() { echo; echo "=== $1 ($(( $(date +%s) - started )) s)"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$python" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

step "packages"
if ! "$python" -c "import diffusers" 2>/dev/null; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site
  else
    echo "diffusers is missing and $WHEELS holds no wheels: run 'benchmarks/gpu_check.sh prepare' first"
    exit 1
  fi
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
"$python" -c "import diffusers, transformers; print('diffusers', diffusers.__version__, 'transformers', transformers.__version__)" || exit 1

step "generator benchmark: fp16 eager and torch.compile + CUDA graphs"
timeout 270 "$python" benchmarks/generator.py --device cuda --dtypes fp16 \
  --compile none,reduce-overhead --json "$OUT/generator.json" 2>&1 | tee "$OUT/generator.log"
echo "exit status ${PIPESTATUS[0]}"

# Flags of the other benchmarks are used only if their --help lists them.
supports() { "$python" "$1" --help 2>/dev/null | grep -q -- "$2"; }

step "vocoder benchmark on the GPU"
if [ -f benchmarks/vocoder.py ]; then
  args=()
  supports benchmarks/vocoder.py --device && args+=(--device cuda)
  timeout 45 "$python" benchmarks/vocoder.py "${args[@]}" 2>&1 | tee "$OUT/vocoder.log"
  echo "exit status ${PIPESTATUS[0]}"
else
  echo "benchmarks/vocoder.py does not exist yet: skipped"
fi

step "end-to-end stream, real SD 1.5 architecture (random weights)"
if [ -f benchmarks/latency.py ]; then
  args=()
  supports benchmarks/latency.py --device && args+=(--device cuda)
  if supports benchmarks/latency.py --model; then
    model=/tmp/sd15-random
    timeout 60 "$python" -m streamer make-tiny-model "$model" --architecture sd15 >/dev/null \
      && args+=(--model "$model")
  fi
  timeout 75 "$python" benchmarks/latency.py "${args[@]}" 2>&1 | tee "$OUT/latency.log"
  echo "exit status ${PIPESTATUS[0]}"
else
  echo "benchmarks/latency.py does not exist yet: skipped"
fi

step "done: figures in $OUT"
ls -la "$OUT"
grep -h '^RESULT' "$OUT"/*.log 2>/dev/null
