#!/usr/bin/env bash
# One lease of a GPU machine (the device tool, at most 10 minutes a command) that trains on real patients: the
# bundled 64^3 model continued end to end (conditioning network and denoiser) on phantoms and the five training
# patients' CTs at GPU batch size, a snapshot kept every SNAPSHOT_EVERY steps, so that the step is chosen afterwards
# on the validation patients, who never train. With FROM_SCRATCH=1, a new cpu-64 model instead (perspective planes
# and back-projected views from the start): regression for REGRESSION_MIN minutes, then diffusion.
#
# On this machine first (after `diffux2ct fetch-real`): .venv/bin/python Testing/benchmarks/lease_pack.py
# Then the device tool: command "bash Testing/benchmarks/gpu_lease_real.sh", carry [".lease", ".whl"], timeout 600.
# Back here: tar xf <files_at>/snapshots.tar, then for each snapshot
#   .venv/bin/diffux2ct evaluate --model runs/gpu-real/snapshots/step-N --set real --draws 3 --out runs/eval3-gpu-N
#
# Dry run on the CPU, with SimpleITK hidden as it is on the GPU machine (the first paints a phantom bank: minutes):
#   mkdir -p /tmp/no-sitk && echo 'raise ImportError("no SimpleITK here")' > /tmp/no-sitk/SimpleITK.py
#   PYTHONPATH=/tmp/no-sitk DEVICE=cpu MINUTES=1 BATCH=1 SNAPSHOT_EVERY=2 PY=.venv/bin/python OUT=/tmp/out \
#     bash Testing/benchmarks/gpu_lease_real.sh
set -u
OUT=${OUT:?set OUT to the folder that comes back}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-7}                # training time in all
REGRESSION_MIN=${REGRESSION_MIN:-3}  # of which regression, with FROM_SCRATCH=1
FROM_SCRATCH=${FROM_SCRATCH:-0}
BATCH=${BATCH:-8}
LR=${LR:-2e-4}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-400}
SEED=${SEED:-50}
DEADLINE=${DEADLINE:-540}  # seconds after which training is stopped (SIGTERM: a checkpoint), whatever its limits
export DIFFUX2CT_CACHE=/tmp/diffux2ct-cache  # the data cache: the packed real CTs, the phantom bank painted here
source "$(dirname "$0")/lease_env.sh"
exec > >(tee "$OUT/console.log") 2>&1
echo "start $(date -u +%FT%TZ), $(nproc) cores, $WORKERS data workers, from scratch: $FROM_SCRATCH"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda',
  torch.cuda.is_available())" || exit 1
mkdir -p "$DIFFUX2CT_CACHE" && tar xzf .lease/real-cache.tar.gz -C "$DIFFUX2CT_CACHE" \
  || { echo "no .lease/real-cache.tar.gz: run lease_pack.py here and carry .lease"; exit 1; }

train() {  # stage, run folder, minutes, options...
  local stage=$1 out=$2 minutes=$3; shift 3
  echo "== $stage for $minutes min ($(( DEADLINE - SECONDS )) s to the deadline)"
  timeout --kill-after=30 "$(( DEADLINE - SECONDS ))" $PY -m DiffuX2CTLib.cli train --stage "$stage" \
    --data phantoms+real --real-share 0.5 --batch "$BATCH" --steps 100000 --seed "$SEED" \
    --checkpoint-every "$SNAPSHOT_EVERY" --snapshot-every "$SNAPSHOT_EVERY" \
    --device "$DEVICE" --workers "$WORKERS" --time-limit "$minutes" --quiet --out "$out" "$@"
}

if [ "$FROM_SCRATCH" = 1 ]; then
  train regression runs/gpu-real-regression "$REGRESSION_MIN" --lr 5e-4 || exit 1
  INIT=runs/gpu-real-regression/model
  DIFFUSION_OPTIONS=(--lr 5e-4 --prediction v_prediction --residual-scale 5)
  DIFFUSION_MIN=$($PY -c "print($MINUTES - $REGRESSION_MIN)")
else
  INIT=Resources/Models/diffux2ct-64
  DIFFUSION_OPTIONS=(--lr "$LR")
  DIFFUSION_MIN=$MINUTES
fi
train diffusion runs/gpu-real "$DIFFUSION_MIN" --init "$INIT" --finetune-conditioner --bone-weight 6 \
  "${DIFFUSION_OPTIONS[@]}"
status=$?

# What comes back: every snapshot and the last model (fp16, about 3 MB each), the logs and loss curves, in one tar.
tar cf "$OUT/snapshots.tar" runs/gpu-real/snapshots runs/gpu-real/model runs/gpu-real*/log.jsonl runs/gpu-real*/loss.png
$PY - <<'SUMMARY'
import json
steps = [r for r in map(json.loads, open("runs/gpu-real/log.jsonl")) if "loss" in r]
if steps:
    last = steps[-50:]
    print("steps", steps[-1]["step"], "mean loss of the last 50", sum(r["loss"] for r in last) / len(last),
          "mean data wait", sum(r.get("data_s", 0) for r in steps) / len(steps))
SUMMARY
echo "done after $SECONDS s, training exit $status"
exit $status
