#!/usr/bin/env bash
# Build the Grand-Challenge container image: ./build.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")"
tag="${1:-pathssl-gc:latest}"
docker build --platform=linux/amd64 --tag "$tag" .
echo "built $tag"
