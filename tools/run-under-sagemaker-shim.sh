#!/usr/bin/env bash
# Run the container through Grand-Challenge's SageMaker shim, the way the platform runs a job,
# and show what the platform would see: the job's log lines, the shim's return code, the
# message of a failed job and the uploaded outputs.
#
# How the platform does it (comic/grand-challenge.org, app/grandchallenge/components/):
# tasks.py patches the image (shim as entrypoint, original entrypoint/cmd/user in env vars);
# backends/amazon_sagemaker_training.py starts a SageMaker training job with the arguments
# `invoke --file s3://<inputs>/invocations/<job>/invocation.json`; backends/base.py provisions
# the inputs (with inputs.json) and the model tarball in S3, sets
# GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB (instance memory - 1 GB) and a signing key, reads the
# signed inference_result.json and shows the last stderr line of a failed job.
# tools/sagemaker-shim/ builds the patched image (shim 0.6.1, the platform's pin) and a local
# S3 (moto's server) on an internal Docker network; nothing outside it is reachable.
#
# Jobs: (1) the Task01 UNICORN case, whose outputs must match test/expected_output; (2) a job
# whose inputs match no interface (the platform must show pathssl's one line); (3) the wsi
# case with a time limit shorter than the job (the shim stops it: SIGTERM, 5 s grace, SIGKILL).
# PASS or FAIL at the end.
#
# Usage: [PYTORCH_IMAGE=...] [SKIP_BUILD=1] tools/run-under-sagemaker-shim.sh [APP_TAG]
#   LIMIT_S=N: the time limit of job (3) in seconds (default 6: inside start-up and model
#   loading, so always shorter than the job; the whole wsi job took 15 s on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
here="$(pwd)"
app="${1:-pathssl-gc:latest}"
shim_img="$app-sagemaker-shim"
s3_img="pathssl-gc:s3-standin"
pip="${PIP:-$here/.venv/bin/pip}"
[ -x "$pip" ] || pip="python3 -m pip"

[ "${SKIP_BUILD:-0}" = 1 ] || ./build.sh "$app"

work="$(mktemp -d)"
net="pathssl-shim-net-$$"
s3="pathssl-shim-s3-$$"
# shellcheck disable=SC2329  # called by the trap
cleanup() {
  docker rm -f "$s3" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  docker run --rm --network none --user 0:0 --entrypoint /bin/sh \
    --volume "$work":/work "$app" -c 'rm -rf /work/* /work/.[!.]*' >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The shim binary, built as its release is (pyinstaller -F on the release from PyPI) with a
# Python >= 3.11.4 (0.6.1 declares 3.12; it runs on 3.11.4+, which has tarfile's filter=),
# cached; then the images. Wheels come from PyPI on this host (cached), for the image's Python.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pathssl-shim"
shim_bin="$cache/sagemaker-shim-0.6.1-Linux-x86_64"
if [ ! -x "$shim_bin" ]; then
  py="${SHIM_BUILD_PYTHON:-$here/.venv/bin/python}"
  "$py" -c 'import sys; assert sys.version_info >= (3, 11, 4), sys.version' || {
    echo "run-under-sagemaker-shim: the shim needs Python >= 3.11.4 to build; set SHIM_BUILD_PYTHON" >&2
    exit 2
  }
  "$py" -m venv "$work/shim-build"
  "$work/shim-build/bin/pip" install -q --ignore-requires-python \
    -r tools/sagemaker-shim/requirements-shim.txt pyinstaller==6.22.3
  (cd "$work" && "$work/shim-build/bin/pyinstaller" -F --log-level WARN \
    "$work"/shim-build/lib/python3*/site-packages/sagemaker_shim/cli.py \
    --hidden-import=aioboto3.s3 --hidden-import=aioboto3.s3.inject \
    --distpath "$work/dist" --workpath "$work/pyi" --specpath "$work/pyi" -n sagemaker-shim)
  mkdir -p "$cache"
  mv "$work/dist/sagemaker-shim" "$shim_bin"
fi
ctx="$work/ctx"
mkdir -p "$ctx/wheels"
cp tools/sagemaker-shim/{Dockerfile,gc_platform.py} "$ctx/"
cp "$shim_bin" "$ctx/sagemaker-shim"
cp tools/sagemaker-shim/requirements-s3.txt "$ctx/wheels/"
pyver="$(docker run --rm --network none --entrypoint python "$app" -c \
  'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
wheels="$cache/wheels-py$pyver"
mkdir -p "$wheels"
if ! compgen -G "$wheels/moto-5.2.5-*.whl" >/dev/null; then
  $pip download -q --only-binary :all: --implementation cp --python-version "$pyver" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$wheels" -r tools/sagemaker-shim/requirements-s3.txt
fi
cp "$wheels"/*.whl "$ctx/wheels/"
b64() { docker image inspect -f "{{json .Config.$1}}" "$app" | tr -d '\n' | base64 -w0; }
docker build --quiet --target shim --build-arg APP_IMAGE="$app" \
  --build-arg CMD_B64J="$(b64 Cmd)" --build-arg ENTRYPOINT_B64J="$(b64 Entrypoint)" \
  --build-arg COMPONENT_USER="$(docker image inspect -f '{{.Config.User}}' "$app")" \
  --tag "$shim_img" "$ctx" >/dev/null
docker build --quiet --target s3 --build-arg APP_IMAGE="$app" --tag "$s3_img" "$ctx" >/dev/null
echo "built $shim_img (entrypoint $(docker image inspect -f '{{json .Config.Entrypoint}}' "$shim_img"), user $(docker image inspect -f '{{.Config.User}}' "$shim_img")) and $s3_img"

# 2. The buckets, on a network with no way out.
docker network create --internal "$net" >/dev/null
docker run -d --name "$s3" --network "$net" --network-alias s3 "$s3_img" >/dev/null
aws=(-e AWS_S3_ENDPOINT_URL=http://s3:5000 -e AWS_ACCESS_KEY_ID=testing
  -e AWS_SECRET_ACCESS_KEY=testing -e AWS_DEFAULT_REGION=us-east-1)
platform() {  # platform ARGS...: gc_platform.py next to the buckets, $work at /work
  docker run --rm --network "$net" "${aws[@]}" --volume "$work":/work --volume "$here/test":/test:ro \
    --entrypoint /opt/moto/bin/python "$s3_img" /opt/gc_platform.py "$@"
}
for _ in $(seq 1 60); do
  docker run --rm --network "$net" --entrypoint /opt/moto/bin/python "$s3_img" -c \
    "import urllib.request; urllib.request.urlopen('http://s3:5000/moto-api/')" >/dev/null 2>&1 && break
  sleep 1
done
tar -czf "$work/model.tar.gz" -C model .  # as export.sh packs it
cp -r test/input/wsi "$work/unknown"
sed -i 's/"whole-slide-image"/"whole-slide-image-x"/' "$work/unknown/inputs.json"

gpu=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=(--gpus all); fi

run_job() {  # run_job NAME CASE_DIR(in the s3 container) TIME_LIMIT_S: prints the platform's view
  local name="$1" case_dir="$2" limit="$3" job key line refs code
  job="algorithms-job-$(cat /proc/sys/kernel/random/uuid)"
  key="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
  line="$(platform provision "$case_dir" /work/model.tar.gz "$job" "$limit")"
  read -r -a refs <<<"$line"
  echo "== job $name: $job, time limit $limit s"
  # As on an 8 GB instance (ml.m7i.large: MAX_MEMORY_MB = (8 - 1) * 1024).
  code=0
  docker run --name "$name-$$" --network "$net" "${gpu[@]}" "${aws[@]}" \
    --memory 8g --memory-swap 8g --shm-size 1g \
    -e LOG_LEVEL=INFO -e PYTHONUNBUFFERED=1 -e no_proxy=amazonaws.com \
    -e GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB=7168 \
    -e GRAND_CHALLENGE_COMPONENT_SIGNING_KEY_HEX="$key" \
    -e GRAND_CHALLENGE_COMPONENT_MODEL="${refs[1]}" \
    "$shim_img" invoke --file "${refs[0]}" >"$work/$name.log" 2>&1 || code=$?
  docker rm "$name-$$" >/dev/null
  echo "-- the shim's own log (internal lines, as CloudWatch holds them):"
  grep '"internal": true' "$work/$name.log" | sed -n 's/.*"log": "\(.*\)", "level".*/   \1/p' \
    | grep -v "Downloading\|Uploading \|Setting up linked\|chown of\|user=\|Looking up user" \
    | cut -c1-160 || true
  if grep -qv '^{' "$work/$name.log"; then
    echo "-- lines that are not the shim's structured log (the shim itself failing):"
    grep -v '^{' "$work/$name.log" | tail -n 15 | cut -c1-200
  fi
  echo "-- the shim exited with $code"
  platform report "$job" "$key" "/work/$name.log" "/work/$name-out" | tee "$work/$name.report"
}

status=0
run_job good /test/input/task01-biopsy-classification 1200
if grep -q '^platform: return_code 0$' "$work/good.report" \
  && docker run --rm --network none --entrypoint python \
    --volume "$here/test/expected_output/task01-biopsy-classification":/expected:ro \
    --volume "$work/good-out":/actual:ro "$app" -m pathssl.grand_challenge.compare /expected /actual \
    --rtol "${RTOL:-1e-4}" --atol "${ATOL:-1e-5}"; then
  echo "ok: a UNICORN job through the shim: return code 0, outputs match test/expected_output"
else
  echo "FAIL: the UNICORN job through the shim"; status=1
fi

run_job unknown /work/unknown 1200
if grep -q '^platform: return_code 2$' "$work/unknown.report" \
  && grep -q '^-- the platform shows: .*match no interface' "$work/unknown.report"; then
  echo "ok: a failing job shows pathssl's one line on the platform"
else
  echo "FAIL: the failing job"; status=1
fi

# The shim cancels its log readers when the time limit strikes, before it sends SIGTERM, so
# nothing the job prints after that reaches the log (pathssl's SIGTERM line included; test.sh
# checks that line under docker stop). What must hold: the platform's message and no outputs.
# Whether the job ended within the shim's 5 s grace or was killed is reported, not required:
# either way the shim cleans /output and the platform shows the same.
run_job timelimit /test/input/wsi "${LIMIT_S:-6}"
if grep -q '^-- the platform shows: Time limit exceeded' "$work/timelimit.report" \
  && [ ! -e "$work/timelimit-out" ]; then
  if grep -q 'escalating to SIGKILL' "$work/timelimit.log"; then
    how="pathssl was still running 5 s after SIGTERM: SIGKILL"
  else
    how="pathssl ended within the 5 s grace"
  fi
  echo "ok: a job over its time limit: the platform shows 'Time limit exceeded', no outputs; $how"
else
  echo "FAIL: the job over its time limit"; status=1
fi

if [ "$status" -eq 0 ]; then echo "PASS: pathssl under the SageMaker shim"; else echo "FAIL: see above"; fi
exit "$status"
