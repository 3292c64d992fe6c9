#!/usr/bin/env bash
# Write the files to upload to Grand-Challenge:
#   pathssl-gc.tar.gz  the container image (docker save | gzip)
#   model.tar.gz       the model bundle in model/, for the separate model upload
#                      (extracted to /opt/ml/model/ at run time)
# and print the compressed image's size. Grand-Challenge refuses an upload over 2 GB, so this
# fails (and removes the tarball) when the image is larger, unless MAX_UPLOAD_BYTES says more.
# Usage: [PYTORCH_IMAGE=...] [MAX_UPLOAD_BYTES=N] ./export.sh [TAG] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
tag="${1:-pathssl-gc:latest}"
outdir="${2:-.}"
limit="${MAX_UPLOAD_BYTES:-2000000000}"  # 2 GB, counted in decimal bytes (the stricter reading)
if ! [[ "$limit" =~ ^[0-9]+$ ]]; then
  echo "export.sh: MAX_UPLOAD_BYTES=$limit is not a number of bytes; give e.g. 2000000000" >&2
  exit 2
fi
mkdir -p "$outdir"
./build.sh "$tag"
trap 'rm -f "$outdir/pathssl-gc.tar.gz.tmp" "$outdir/model.tar.gz.tmp"' EXIT
docker save "$tag" | gzip -c > "$outdir/pathssl-gc.tar.gz.tmp"
size="$(stat -c %s "$outdir/pathssl-gc.tar.gz.tmp")"
echo "image $tag: $size bytes compressed ($((size / 1000000)) MB; limit $((limit / 1000000)) MB)"
if [ "$size" -gt "$limit" ]; then
  echo "export.sh: $outdir/pathssl-gc.tar.gz would be $size bytes, over the ${limit}-byte upload limit; slim the image (smaller base, fewer packages) or set MAX_UPLOAD_BYTES if the platform allows more" >&2
  exit 1
fi
mv "$outdir/pathssl-gc.tar.gz.tmp" "$outdir/pathssl-gc.tar.gz"
# The bundle's files at the top of the tarball (not under model/): Grand-Challenge extracts it
# into /opt/ml/model/ and pathssl refuses a tarball without config.json at its top.
tar -czf "$outdir/model.tar.gz.tmp" -C model .
mv "$outdir/model.tar.gz.tmp" "$outdir/model.tar.gz"
ls -l "$outdir/pathssl-gc.tar.gz" "$outdir/model.tar.gz"
