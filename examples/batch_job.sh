#!/usr/bin/env bash
# Embed the synthetic Sentinel-2 scene as a batch job, then rerun it to show resuming.
#
#   bash examples/batch_job.sh [OUT_STORE]
#
# Environment knobs (defaults in brackets):
#   MODEL    model config [terrafm-b]; terrafm-tiny for a fast smoke test
#   WEIGHTS  weights file [none: random init, fine for trying the pipeline]
#   TILE     window size in pixels [224]
#   CLUSTER  threads | local | tcp://scheduler:8786 | gateway [local]
#   EXTRA    more options for `xterrafm embed`, e.g. "--gateway-address http://gw:8000 --adapt 1 8"
set -euo pipefail

OUT=${1:-xterrafm-output/embeddings.zarr}
MODEL=${MODEL:-terrafm-b}
TILE=${TILE:-224}
CLUSTER=${CLUSTER:-local}
PYTHON=${PYTHON:-python}
WEIGHT_ARGS=()
if [[ -n "${WEIGHTS:-}" ]]; then
    WEIGHT_ARGS=(--weights "$WEIGHTS")
fi
# shellcheck disable=SC2206  # EXTRA is meant to be split into words
EXTRA_ARGS=(${EXTRA:-})

# No SOURCE: the synthetic scene is generated next to the store (once) and embedded.
"$PYTHON" -m xterrafm embed --out "$OUT" --model "$MODEL" --tile "$TILE" \
    --cluster "$CLUSTER" "${WEIGHT_ARGS[@]}" "${EXTRA_ARGS[@]}"

# Same command again: every block is already done, so nothing is recomputed.
"$PYTHON" -m xterrafm embed --out "$OUT" --model "$MODEL" --tile "$TILE" \
    --cluster "$CLUSTER" "${WEIGHT_ARGS[@]}" "${EXTRA_ARGS[@]}" --no-progress

echo "embeddings: $OUT"
echo "preview:    $(dirname "$OUT")/$(basename "$OUT" .zarr)_preview.png"
"$PYTHON" - "$OUT" <<'PY'
import sys

import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

emb = xr.open_zarr(sys.argv[1], decode_coords="all", consolidated=False)["embeddings"]
print(emb.sizes, emb.rio.crs, emb.attrs["model"], emb.attrs["weights_sha256"][:12])
PY
