#!/usr/bin/env bash
# One lease of a GPU machine (the device tool), in under 10 minutes: train the paper-size 128^3 preset, continuing
# from INIT (a model folder, e.g. a previous lease's; the default, empty, starts from scratch),
# stage 1 (regression) then stage 2 (diffusion), at batch 8 with bf16 autocast, volumes painted by CPU data workers
# and each seen REUSE times under a random pose rendered on the GPU (train --reuse); then time DDIM sampling at
# 128^3. The runs' logs give the share of step time spent waiting for data. What comes back (at most 8 files of
# 16 MiB): results.tar (logs, configs, loss curves, figures, console) and each stage's fp16 weights in 15 MB pieces
# (reassemble with cat). The machine has torch but neither MONAI nor SimpleITK: MONAI's wheel travels in .whl/.
#
#   bash Testing/benchmarks/gpu_lease_128.sh        # on the GPU machine, OUT set by the device tool
#   DEVICE=cpu PRESET_OPTS="--grid 32" BATCH=2 REGRESSION_MIN=0.2 DIFFUSION_MIN=0.2 PY=.venv/bin/python OUT=/tmp/out \
#     bash Testing/benchmarks/gpu_lease_128.sh     # dry run
set -u
OUT=${OUT:?set OUT to the folder that comes back}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-8}
REUSE=${REUSE:-32}
REGRESSION_MIN=${REGRESSION_MIN:-3.3}
DIFFUSION_MIN=${DIFFUSION_MIN:-4.2}
PRESET_OPTS=${PRESET_OPTS:-}
INIT=${INIT-}
DEADLINE=${DEADLINE:-540}  # seconds after which nothing new is started
source "$(dirname "$0")/lease_env.sh"
SHM_GB=$(df -BG --output=avail /dev/shm 2>/dev/null | tail -1 | tr -dc 0-9)
[ "${SHM_GB:-0}" -lt 4 ] && [ "$DEVICE" = cuda ] && { echo "/dev/shm has ${SHM_GB:-?} GB: volumes made on the GPU instead of by workers"; WORKERS=0; }
mkdir -p "$OUT/keep"
exec > >(tee "$OUT/keep/console.log") 2>&1
echo "start $(date -u +%FT%TZ), $(nproc) cores, $WORKERS data workers, /dev/shm ${SHM_GB:-?} GB free"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())"
# the phantom painter (int32 noise hash, slabs on the CPU) must give the same volume on the GPU
$PY -c "
import torch
from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.imaging.geometry import VolumeGrid
grid = VolumeGrid(64, 5.0)
if torch.cuda.is_available():
    gap = (generate_phantom(21, grid, 'chest') - generate_phantom(21, grid, 'chest', device='cuda').cpu()).abs().max()
    print(f'phantom on the GPU against the CPU: largest difference {float(gap):.4f} HU')
"

left() { echo $(( DEADLINE - SECONDS )); }
keep_model() {  # run folder, stage name
  local run=$1 name=$2
  [ -f "$run/model/model.safetensors" ] || return 1
  mkdir -p "$OUT/keep/$name" && cp "$run/model/config.json" "$run/log.jsonl" "$OUT/keep/$name/" && cp "$run/loss.png" "$OUT/keep/$name/" 2>/dev/null
  split -b 15000000 -d "$run/model/model.safetensors" "$OUT/$name.safetensors.part"
  $PY Testing/benchmarks/training.py --from-log "$run/log.jsonl" --batch "$BATCH" | tee "$OUT/keep/$name/throughput.json"
}
train() {  # stage, out, minutes, extra options...
  local stage=$1 out=$2 minutes=$3; shift 3
  echo "== $stage for $minutes min ($(left) s left)"
  $PY -m DiffuX2CTLib.cli train --stage "$stage" --data phantoms --batch "$BATCH" --lr 5e-4 --steps 100000 --checkpoint-every 100 \
    --device "$DEVICE" --workers "$WORKERS" --reuse "$REUSE" --time-limit "$minutes" --quiet --out "$out" "$@"
}

[ -z "$INIT" ] || [ -d "$INIT" ] || { echo "INIT $INIT is not a model folder (INIT= trains from scratch)"; exit 1; }
[ -n "$INIT" ] && [ -n "$PRESET_OPTS" ] && echo "PRESET_OPTS ($PRESET_OPTS) ignored: the run continues $INIT"
if [ -n "$INIT" ]; then START=(--init "$INIT"); else START=(--preset paper-128 $PRESET_OPTS); fi
train regression runs/gpu-regression-128 "$REGRESSION_MIN" "${START[@]}" && keep_model runs/gpu-regression-128 regression-128
if [ -d runs/gpu-regression-128/model ] && [ "$(left)" -gt 90 ]; then
  # the bundled model's parametrisation (README, Diffusion parametrisation); the first lease ran with the defaults
  # (epsilon, scale 1) and its denoiser learned nothing useful in 236 steps
  train diffusion runs/gpu-diffusion-128 "$DIFFUSION_MIN" --init runs/gpu-regression-128/model --prediction v_prediction --residual-scale 5 \
    && keep_model runs/gpu-diffusion-128 diffusion-128
fi

MODEL=runs/gpu-diffusion-128/model
[ -d "$MODEL" ] || MODEL=runs/gpu-regression-128/model
echo "== sampling ($(left) s left)"
[ "$(left)" -gt 20 ] && [ -d "$MODEL" ] && timeout "$(left)" $PY Testing/benchmarks/sampling.py --device "$DEVICE" --model "$MODEL" --samples 16 --precision float32 bfloat16 --out "$OUT/keep/sampling-128.json"
echo "done after $SECONDS s"
tar cf "$OUT/results.tar" -C "$OUT" keep && rm -rf "$OUT/keep"
