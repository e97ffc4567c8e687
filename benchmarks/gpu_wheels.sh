#!/usr/bin/env bash
# Download into .whl/ the wheels that benchmarks/gpu_check.py needs and the lent GPU machine
# lacks (Python 3.12, x86-64, manylinux), and check that they fit the 64 MiB the device tool
# carries together with the working tree. Wheels are never committed (.whl/ is ignored).
#
# Usage:  benchmarks/gpu_wheels.sh [--no-rasterio]
#   PYTHON=...  the interpreter whose installed versions are pinned (default: python3, i.e.
#               the activated venv in which the CPU rehearsal passed)
#
# The machine has torch, numpy, xarray, pandas, numba, safetensors, tqdm, pillow, psutil,
# pytest, pyyaml, toolz, cloudpickle, msgpack, fsspec, click, jinja2, sortedcontainers,
# urllib3, packaging, attrs, certifi, pyparsing (see /work/.library/device/KINDS.md). It lacks:
#   core:     dask, distributed (+ tornado, tblib, zict, locket, partd), zarr (+ numcodecs,
#             donfig, google-crc32c), odc-geo (+ pyproj, shapely, affine, cachetools)
#   rasterio: rasterio, rioxarray (+ cligj, click-plugins): needed only because
#             xterrafm/embedding/api.py imports rioxarray at module level; --no-rasterio
#             drops them (36 MB) once that import is lazy.
# Not carried (not on the GPU path): pystac, pystac-client, odc-stac, odc-loader, dask-gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
CORE="dask distributed tornado tblib zict locket partd zarr numcodecs donfig google-crc32c
odc-geo pyproj shapely affine cachetools"
RASTERIO="rasterio rioxarray cligj click-plugins"
WANT="$CORE"
case "${1:-}" in
  --no-rasterio) ;;
  "") WANT="$CORE $RASTERIO" ;;
  *) echo "usage: $0 [--no-rasterio]" >&2; exit 2 ;;
esac
LIMIT=$((64 * 1024 * 1024))

rm -rf .whl
mkdir -p .whl
for name in $WANT; do
  version=$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name") || {
    echo "gpu_wheels: $name is not installed in $PY's environment (pin source)" >&2; exit 1; }
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$name==$version" 2>&1 | grep -v "^WARNING: Location" || true
  ls .whl | grep -iq "^$(echo "$name" | tr '-' '_')-$version" || {
    echo "gpu_wheels: no wheel of $name==$version for CPython 3.12 manylinux x86-64" >&2; exit 1; }
done

wheels=$(find .whl -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
       | awk '{s += $1} END {print s + 0}')
total=$((wheels + tree))
echo "wheels: $(ls .whl | wc -l) files, $((wheels / 1024)) KiB"
ls -S .whl | while read -r f; do printf '  %8d KiB  %s\n' $(($(stat -c %s ".whl/$f") / 1024)) "$f"; done
echo "working tree that travels (tracked + untracked, not ignored): $((tree / 1024)) KiB"
echo "total: $((total / 1024)) KiB of $((LIMIT / 1024)) KiB (64 MiB)"
if [ "$total" -gt "$LIMIT" ]; then
  echo "gpu_wheels: over the device tool's 64 MiB; try --no-rasterio" >&2
  exit 1
fi
