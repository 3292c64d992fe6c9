#!/usr/bin/env bash
# Build the image, run it on test/input as Grand-Challenge does, compare /output with
# test/expected_output, run again and check both runs agree. Prints PASS or FAIL.
#
# Float tolerance: rtol 1e-4 / atol 1e-5 on CPU (the expected output was made on CPU in fp32);
# rtol 5e-2 / atol 5e-2 with a GPU, whose bf16 autocast rounds differently. Structure, keys,
# shapes, coordinates and model hash must match exactly.
set -euo pipefail
cd "$(dirname "$0")"
here="$(pwd)"
tag="${1:-pathssl-gc:test}"

./build.sh "$tag"

gpu=()
rtol=1e-4
atol=1e-5
agree=1e-5
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=(--gpus all)
  rtol=5e-2
  atol=5e-2
  agree=1e-3  # cuDNN may pick other kernels between runs
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run_once() {
  local out="$1"
  mkdir -p "$out"
  chmod 777 "$out"  # the container runs as a non-root user
  docker run --rm \
    --platform=linux/amd64 \
    --network none \
    "${gpu[@]}" \
    --memory 8g --memory-swap 8g \
    --shm-size 1g \
    --pids-limit 256 \
    --volume "$here/test/input":/input:ro \
    --volume "$out":/output \
    --volume "$here/model":/opt/ml/model:ro \
    "$tag"
}

compare() {
  docker run --rm --network none --entrypoint python \
    --volume "$1":/expected:ro --volume "$2":/actual:ro \
    "$tag" -m pathssl.grand_challenge.compare /expected /actual --rtol "$3" --atol "$4"
}

status=0
run_once "$work/run1" || status=1
run_once "$work/run2" || status=1
if [ "$status" -eq 0 ]; then
  compare "$here/test/expected_output" "$work/run1" "$rtol" "$atol" || status=1
  compare "$work/run1" "$work/run2" "$agree" "$agree" || status=1
fi

if [ "$status" -eq 0 ]; then
  echo "PASS: container output matches test/expected_output and two runs agree"
else
  echo "FAIL: see the lines above"
fi
exit "$status"
