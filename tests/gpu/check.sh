#!/usr/bin/env bash
# The GPU checks, as one short script for a session lent a device machine (not run by pytest or CI):
#   run(command="bash tests/gpu/check.sh", timeout_s=590)
# It needs only torch, numpy, pyyaml and scikit-learn (the device image has them) and the working tree.
# Writes bench_<space>.json (rdarts bench: search steps, eigenvalue vs the dense Hessian, and
# eigenvalue_epoch_fraction) and env.txt under $OUT. Each space has its own time limit, so one slow
# space cannot eat the others' time.
set -uo pipefail
OUT=${OUT:-/tmp/rdarts_gpu}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=$(command -v python3 || command -v python)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
bench() {  # space, seconds, extra args
  local sp=$1 limit=$2; shift 2
  echo "== $sp (limit ${limit}s)"
  timeout "$limit" $PY -c "import sys; from robust_darts.bench import main; sys.exit(main(sys.argv[1:]))" \
    --device cuda --space "$sp" --repeats 3 "$@" > "$OUT/bench_$sp.json" 2> "$OUT/bench_$sp.err"
  echo "rc=$?"; cat "$OUT/bench_$sp.json"; tail -3 "$OUT/bench_$sp.err"
}
bench s1 150
bench s3 180
bench s5 220 --full-rows 8    # the reference's dense S5 Hessian is ~15 min on an H200: 8 rows per α tensor timed
