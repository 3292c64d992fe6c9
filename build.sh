#!/usr/bin/env bash
# Build the Grand-Challenge container image: ./build.sh [TAG]
# The PyTorch base image comes from $PYTORCH_IMAGE (default: the Dockerfile's), e.g.
#   PYTORCH_IMAGE="$(../shared/tools/container-base-standin.sh)" ./build.sh
set -euo pipefail
cd "$(dirname "$0")"
tag="${1:-pathssl-gc:latest}"
base=()
if [ -n "${PYTORCH_IMAGE:-}" ]; then
  base=(--build-arg "PYTORCH_IMAGE=$PYTORCH_IMAGE")
fi
docker build --platform=linux/amd64 "${base[@]}" --tag "$tag" .
echo "built $tag${PYTORCH_IMAGE:+ on $PYTORCH_IMAGE}"
