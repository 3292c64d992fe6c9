#!/usr/bin/env bash
# Write the files to upload to Grand-Challenge:
#   pathssl-gc.tar.gz  the container image (docker save | gzip)
#   model.tar.gz       the model bundle in model/, for the separate model upload
#                      (extracted to /opt/ml/model/ at run time)
# Usage: [PYTORCH_IMAGE=...] ./export.sh [TAG] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
tag="${1:-pathssl-gc:latest}"
outdir="${2:-.}"
mkdir -p "$outdir"
./build.sh "$tag"
docker save "$tag" | gzip -c > "$outdir/pathssl-gc.tar.gz.tmp"
mv "$outdir/pathssl-gc.tar.gz.tmp" "$outdir/pathssl-gc.tar.gz"
# The bundle's files at the top of the tarball (not under model/): Grand-Challenge extracts it
# into /opt/ml/model/ and pathssl refuses a tarball without config.json at its top.
tar -czf "$outdir/model.tar.gz.tmp" -C model .
mv "$outdir/model.tar.gz.tmp" "$outdir/model.tar.gz"
ls -l "$outdir/pathssl-gc.tar.gz" "$outdir/model.tar.gz"
