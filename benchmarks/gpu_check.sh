#!/usr/bin/env bash
# The checks that need a GPU, as one prepared run of under 9 minutes: benchmarks/gpu_check.py's
# steps (models, versions, load, agreement, sd15-eager, compiled, vocoder, latency), each in its
# own process with its own time limit and one line in $OUT/results.txt. The step table is in
# gpu_check.py's docstring.
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
# Only the wheels of modules that machine cannot import are installed. On any machine,
#
#     bash benchmarks/gpu_check.sh --dry-run      # the same steps on the CPU, tiny model only
#
# runs every step without CUDA (a test runs it, so the script cannot rot). $OUT defaults to
# artifacts/gpu-check/; gpu_check.py's options (--steps load,compiled) pass through.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WHEELS=artifacts/gpu-wheels
# module=requirement, at the versions of the development virtualenv. open_clip_torch only
# provides CLIP's BPE vocabulary file for the tokenizer; it is never imported as a library.
PACKAGES=(diffusers=diffusers==0.42.1 open_clip=open_clip_torch==3.3.0 websockets=websockets==17.4
          soundfile=soundfile==0.14.0 cffi=cffi==2.1.1 pycparser=pycparser==3.12
          pyloudnorm=pyloudnorm==0.2.0 scipy=scipy==1.17.1)

if [ "${1:-}" = "prepare" ]; then
  python=${PYTHON:-$ROOT/.venv/bin/python}
  mkdir -p "$WHEELS"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "${PACKAGES[@]#*=}"
  ls -la "$WHEELS"
  echo "now run benchmarks/gpu_check.sh on the GPU machine, carrying $WHEELS"
  exit 0
fi

OUT=${OUT:-$ROOT/artifacts/gpu-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
[ -x "$ROOT/.venv/bin/python" ] && [ -z "${PYTHON:-}" ] && python=$ROOT/.venv/bin/python

missing=()
for package in "${PACKAGES[@]}"; do
  "$python" -c "import ${package%%=*}" 2>/dev/null || missing+=("${package#*=}")
done
if [ ${#missing[@]} -gt 0 ]; then
  wheels=()
  for requirement in "${missing[@]}"; do
    name=${requirement%%==*}
    wheel=$(ls "$WHEELS"/${name//-/_}-${requirement#*==}-*.whl 2>/dev/null | head -1)
    if [ -z "$wheel" ]; then
      echo "missing $requirement and its wheel: run 'benchmarks/gpu_check.sh prepare' first"
      exit 1
    fi
    wheels+=("$wheel")
  done
  echo "installing ${missing[*]} into /tmp/site"
  "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${wheels[@]}" || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

if [ "${1:-}" != "--dry-run" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
# The steps' limits add up to 8.5 minutes; this one guards the whole run.
timeout 540 "$python" benchmarks/gpu_check.py --out "$OUT" "$@"
status=$?
echo "exit status $status; results in $OUT/results.txt"
exit $status
