# Sourced by the GPU lease scripts: MONAI from the wheel carried in .whl/ when the machine lacks it, the repository
# on PYTHONPATH, PY (the interpreter, python3 unless set) and WORKERS (data worker processes: all cores but two).
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1 && ! "$PY" -c "import monai" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
WORKERS=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
