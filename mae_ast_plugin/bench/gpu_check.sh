#!/usr/bin/env bash
# The GPU check in one call (docs/benchmarks.md, "GPU check"): from the repository root on a
# bare GPU machine with torch, numpy, scipy present and no network,
#   bash mae_ast_plugin/bench/gpu_check.sh
# Wheels of the missing packages and the fairseq-fixed sdist are expected in .whl/ (how to
# download them: docs/benchmarks.md, "How to reproduce").  Results: gpu_check.json and
# gpu_check.md in $OUT if set, else ./gpu_check_out.  CPU mode for tests and a dry run here:
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_TINY=1 bash mae_ast_plugin/bench/gpu_check.sh
# Extra arguments go to python -m mae_ast_plugin.bench.gpu_check (e.g. --budget-s 300).
set -euo pipefail
export PYTHONUNBUFFERED=1
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$REPO/gpu_check_out}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
TINY=()
[ "${GPU_CHECK_TINY:-0}" = "1" ] && TINY=(--tiny)
START=$(date +%s)
say() { echo "[gpu_check.sh $(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }

EXTRA_PATH=""
if compgen -G ".whl/*.whl" > /dev/null; then
    SITE="${GPU_CHECK_SITE:-/tmp/site}"
    say "installing $(ls .whl/*.whl | wc -l) wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl
    EXTRA_PATH="$SITE"
fi
if compgen -G ".whl/fairseq*.tar.gz" > /dev/null; then
    SDIST="$(ls .whl/fairseq*.tar.gz | head -1)"
    SRC_ROOT="${GPU_CHECK_SRC:-/tmp/fairseq_src}"
    mkdir -p "$SRC_ROOT"
    tar -xzf "$SDIST" -C "$SRC_ROOT"
    # the unbuilt source tree: fairseq's optional C extensions are not needed here
    FAIRSEQ_SRC="$(ls -d "$SRC_ROOT"/fairseq*/ | head -1)"
    say "fairseq from its source tree $FAIRSEQ_SRC"
    EXTRA_PATH="${FAIRSEQ_SRC%/}${EXTRA_PATH:+:$EXTRA_PATH}"
fi
export PYTHONPATH="$REPO${EXTRA_PATH:+:$EXTRA_PATH}${PYTHONPATH:+:$PYTHONPATH}"
say "python $("$PY" -c 'import sys; print(sys.version.split()[0])'), PYTHONPATH=$PYTHONPATH"
# everything the check imports, first: a missing wheel stops it here, named
"$PY" -c "
import torch, torchaudio, yaml, hydra, omegaconf, soundfile, fairseq, mae_ast_plugin
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'fairseq', fairseq.__version__)
"
status=0
"$PY" -m mae_ast_plugin.bench.gpu_check --device "$DEVICE" ${TINY[@]+"${TINY[@]}"} --out "$OUT_DIR" "$@" \
    || status=$?
say "done (exit $status): $OUT_DIR/gpu_check.md"
exit $status
