#!/usr/bin/env bash
# One lease of a GPU machine (the device tool), in under 10 minutes: continue the bundled 64^3 model,
# stage 1 (regression) then stage 2 (diffusion), each within a wall-clock budget, with samples made by CPU worker
# processes; then time sampling and training throughput. fp16 EMA models, logs and figures land in $OUT (at most
# 8 files come back). The machine has torch but neither MONAI nor SimpleITK: MONAI's wheel travels in .whl/.
#
#   bash Testing/benchmarks/gpu_lease.sh            # on the GPU machine, OUT set by the device tool
#   DEVICE=cpu REGRESSION_MIN=0.1 DIFFUSION_MIN=0.1 BENCH_OPTS="--batch 1 --steps 1" PY=.venv/bin/python \
#     OUT=/tmp/out bash Testing/benchmarks/gpu_lease.sh   # dry run
set -u
OUT=${OUT:?set OUT to the folder that comes back}
DEVICE=${DEVICE:-cuda}
REGRESSION_MIN=${REGRESSION_MIN:-2.5}
DIFFUSION_MIN=${DIFFUSION_MIN:-3.5}
DEADLINE=${DEADLINE:-560}  # seconds after which nothing new is started
source "$(dirname "$0")/lease_env.sh"
exec > >(tee "$OUT/console.log") 2>&1
echo "start $(date -u +%FT%TZ), $(nproc) cores, $WORKERS data workers"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())"

left() { echo $(( DEADLINE - SECONDS )); }
keep_model() {  # run folder, name in $OUT
  mkdir -p "$OUT/$2" && cp "$1/model/model.safetensors" "$1/model/config.json" "$1/log.jsonl" "$OUT/$2/" \
    && $PY -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sys.argv[2], 'steps', r[-1]['step'], 'seconds', r[-1]['seconds'], 'mean loss of the last 50', sum(x['loss'] for x in r[-50:])/len(r[-50:]), 'mean data wait', sum(x['data_s'] for x in r[1:])/max(1,len(r)-1))" "$1/log.jsonl" "$2"
}
train() {  # stage, out, minutes, extra options...
  local stage=$1 out=$2 minutes=$3; shift 3
  echo "== $stage for $minutes min ($(left) s left)"
  $PY -m DiffuX2CTLib.cli train --stage "$stage" --data phantoms --batch 4 --lr 5e-4 --steps 100000 --checkpoint-every 250 \
    --device "$DEVICE" --workers "$WORKERS" --time-limit "$minutes" --quiet --out "$out" "$@"
}

train regression runs/gpu-regression-64 "$REGRESSION_MIN" --init Resources/Models/diffux2ct-64 \
  && keep_model runs/gpu-regression-64 regression
if [ -d runs/gpu-regression-64/model ]; then
  train diffusion runs/gpu-diffusion-64 "$DIFFUSION_MIN" --init runs/gpu-regression-64/model && keep_model runs/gpu-diffusion-64 diffusion
fi

RESULTS=Testing/benchmarks/results
MODEL=runs/gpu-diffusion-64/model
[ -d "$MODEL" ] || MODEL=Resources/Models/diffux2ct-64
echo "== sampling ($(left) s left)"
[ "$(left)" -gt 30 ] && timeout "$(left)" $PY Testing/benchmarks/sampling.py --device "$DEVICE" --model "$MODEL" --samples 16 --precision float32 bfloat16 --out "$RESULTS/sampling-gpu.json"
echo "== training throughput 64^3 ($(left) s left)"
[ "$(left)" -gt 60 ] && timeout "$(left)" $PY Testing/benchmarks/training.py --device "$DEVICE" --presets cpu-64 --workers "$WORKERS" --steps 10 --results training-gpu-64 ${BENCH_OPTS:-}
echo "== training throughput 128^3 ($(left) s left)"
[ "$(left)" -gt 60 ] && timeout "$(left)" $PY Testing/benchmarks/training.py --device "$DEVICE" --presets paper-128 --stages regression --workers "$WORKERS" --steps 4 --results training-gpu-128 ${BENCH_OPTS:-}
tar cf "$OUT/benchmarks.tar" $(ls $RESULTS/sampling-gpu.json $RESULTS/training-gpu-* 2>/dev/null) runs/gpu-*/loss.png 2>/dev/null
echo "done after $SECONDS s"
