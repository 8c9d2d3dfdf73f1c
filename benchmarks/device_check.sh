#!/usr/bin/env bash
# The course on a GPU, checked in one go: install, the CUDA tests, the whole tour on CUDA,
# the benchmarks. Everything goes to one report file (default build/device_check.txt);
# the script exits non-zero if any part failed, and goes on to the next part regardless.
#
#   bash benchmarks/device_check.sh [REPORT]
#
# It uses $PYTHON (default python3) when that interpreter already has a CUDA build of torch
# and the course's dependencies; otherwise it makes .venv-cuda and installs them there from
# PyPI (on Linux x86-64, PyPI's torch wheel is the CUDA build). Budget: under 8 minutes on
# one modern GPU, most of it the tour, which also trains the course checkpoints if build/
# has none.
set -uo pipefail
cd "$(dirname "$0")/.."
REPORT=${1:-build/device_check.txt}
PY=${PYTHON:-python3}
mkdir -p "$(dirname "$REPORT")"
: >"$REPORT"
FAILED=()

log() { echo "$*" | tee -a "$REPORT"; }

# part NAME COMMAND...: run one part, its output into the report, its time and status after it.
part() {
    local name=$1; shift
    log ""
    log "== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee -a "$REPORT"
    local status=${PIPESTATUS[0]}
    log "== $name: exit $status after $((SECONDS - start)) s"
    [ "$status" -eq 0 ] || FAILED+=("$name")
}

ready() {
    "$1" - <<'EOF' 2>/dev/null
import torch, transformers, pytest, nbval, minimodal  # noqa: F401
assert torch.cuda.is_available()
EOF
}

install() {
    $PY -m venv .venv-cuda &&
    .venv-cuda/bin/python -m pip install --quiet torch==2.13.0 &&
    .venv-cuda/bin/python -m pip install --quiet -e ".[dev,ref]" &&
    .venv-cuda/bin/python -m pip install --quiet --no-deps open_clip_torch==3.3.0
}

if ! ready "$PY"; then
    part install install
    PY=.venv-cuda/bin/python
    ready "$PY" || { log "no CUDA build of torch with the course's dependencies could be set up: stopping"; exit 1; }
fi

part machine "$PY" -c "
import platform, torch
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'python', platform.python_version())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f'GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}')
"
part cuda-tests "$PY" -m pytest tests/test_cuda.py -q -rs -o addopts="-p no:cacheprovider"
part tour env MINIMODAL_DEVICE=cuda "$PY" -m minimodal tour
part benchmark-model "$PY" benchmarks/model.py --steps 10 --warmup 3
part benchmark-train "$PY" benchmarks/train.py
part benchmark-generate "$PY" benchmarks/generate.py --dtype bf16
part benchmark-tokenizer "$PY" benchmarks/tokenizer.py

log ""
if [ ${#FAILED[@]} -eq 0 ]; then
    log "device check passed in $SECONDS s; report: $REPORT"
else
    log "device check FAILED (${FAILED[*]}) in $SECONDS s; report: $REPORT"
    exit 1
fi
