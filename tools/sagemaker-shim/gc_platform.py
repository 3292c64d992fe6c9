"""The platform's side of a job, for tools/run-under-sagemaker-shim.sh, against a local S3.

`provision` puts a job's inputs, the model tarball and invocation.json in the buckets the way
Grand-Challenge's backend does (comic/grand-challenge.org
app/grandchallenge/components/backends/base.py: _get_provisioning_tasks, inputs under
/io/<job path>/<relative path>, the model at /auxiliary-data/<job path>/algorithm-model.tar.gz,
the task list at /invocations/<job path>/invocation.json). `report` reads the job back as the
backend does: the shim's structured log lines (parse_structured_log in backends/utils.py: only
lines with internal false reach the user, split by source), the signed
.sagemaker_shim/inference_result.json (_get_inference_result), the message a failed job shows
(_handle_completed_job with user_error: the last non-empty stderr line; 137 is the memory
limit), and it downloads the outputs.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
from pathlib import Path

import boto3

INPUT_BUCKET = "grand-challenge-components-inputs"
OUTPUT_BUCKET = "grand-challenge-components-outputs"


def _s3():  # a boto3 S3 client
    return boto3.client("s3", endpoint_url=os.environ["AWS_S3_ENDPOINT_URL"])


def _job_path(job_id: str) -> str:
    app, model, pk = job_id.split("-", 2)  # as Executor.job_path_parts
    return f"{app}/{model}/{pk}"


def provision(case: Path, model_tar: Path, job_id: str, timeout_s: int) -> None:
    s3 = _s3()
    for bucket in (INPUT_BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    io_prefix = f"/io/{_job_path(job_id)}"
    inputs = []
    for f in sorted(p for p in case.rglob("*") if p.is_file()):
        rel = f.relative_to(case).as_posix()
        key = f"{io_prefix}/{rel}"
        s3.upload_file(Filename=str(f), Bucket=INPUT_BUCKET, Key=key)
        inputs.append(
            {
                "relative_path": rel,
                "bucket_name": INPUT_BUCKET,
                "bucket_key": key,
                "decompress": False,
            }
        )
    model_key = f"/auxiliary-data/{_job_path(job_id)}/algorithm-model.tar.gz"
    s3.upload_file(Filename=str(model_tar), Bucket=INPUT_BUCKET, Key=model_key)
    task = {
        "pk": job_id,
        "inputs": inputs,
        "output_bucket_name": OUTPUT_BUCKET,
        "output_prefix": io_prefix,
        "timeout": f"PT{timeout_s}S",
    }
    invocation_key = f"/invocations/{_job_path(job_id)}/invocation.json"
    s3.put_object(Bucket=INPUT_BUCKET, Key=invocation_key, Body=json.dumps([task]).encode())
    # As the backend writes them: "s3://<bucket>/" + a key that starts with "/".
    print(f"s3://{INPUT_BUCKET}/{invocation_key} s3://{INPUT_BUCKET}/{model_key}")


def _user_logs(log_file: Path) -> tuple[list[str], list[str]]:
    stdout, stderr = [], []
    for line in log_file.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line.strip())
        except json.JSONDecodeError:
            continue  # the platform logs "Could not parse log" and skips it
        if entry.get("internal") is False:
            (stdout if entry["source"] == "stdout" else stderr).append(entry["log"])
    return stdout, stderr


def _inference_result(job_id: str, signing_key_hex: str) -> dict | None:
    s3 = _s3()
    key = f"/io/{_job_path(job_id)}/.sagemaker_shim/inference_result.json"
    try:
        response = s3.get_object(Bucket=OUTPUT_BUCKET, Key=key)
    except s3.exceptions.NoSuchKey:
        return None
    body = response["Body"].read()
    expected = hmac.new(bytes.fromhex(signing_key_hex), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, response["Metadata"]["signature_hmac_sha256"]):
        sys.exit("platform: the inference result's signature does not match")
    return json.loads(body)


def _download_outputs(job_id: str, result: dict, dest: Path) -> list[str]:
    s3 = _s3()
    names = []
    for output in result["outputs"]:
        target = dest / output["relative_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(Bucket=OUTPUT_BUCKET, Key=output["bucket_key"], Filename=str(target))
        names.append(output["relative_path"])
    return sorted(names)


def report(job_id: str, signing_key_hex: str, log_file: Path, dest: Path) -> int:
    stdout, stderr = _user_logs(log_file)
    print("-- the job's stdout, as the platform shows it")
    print("\n".join(stdout) or "(none)")
    print("-- the job's stderr, as the platform shows it")
    print("\n".join(stderr) or "(none)")
    result = _inference_result(job_id, signing_key_hex)
    if result is None:
        print("-- no inference_result.json: the platform says")
        print("   'The invocation request did not return a result'")
        return 1
    code = result["return_code"]
    print(
        f"-- inference_result.json: return_code {code}, exec_duration {result['exec_duration']}, "
        f"shim {result['sagemaker_shim_version']}"
    )
    if code == 0:
        print("-- outputs uploaded: " + ", ".join(_download_outputs(job_id, result, dest)))
    elif code == 137:
        print("-- the platform shows: The container was killed as it exceeded its memory limit")
    else:
        last = next((line.strip() for line in reversed(stderr) if line.strip()), "")
        print(f"-- the platform shows: {last or 'No errors were reported in the logs.'}")
    return code


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("provision")
    p.add_argument("case", type=Path)
    p.add_argument("model_tar", type=Path)
    p.add_argument("job_id")
    p.add_argument("timeout_s", type=int)
    r = sub.add_parser("report")
    r.add_argument("job_id")
    r.add_argument("signing_key_hex")
    r.add_argument("log_file", type=Path)
    r.add_argument("dest", type=Path)
    args = parser.parse_args()
    if args.command == "provision":
        provision(args.case, args.model_tar, args.job_id, args.timeout_s)
    else:
        code = report(args.job_id, args.signing_key_hex, args.log_file, args.dest)
        print(f"platform: return_code {code}")


if __name__ == "__main__":
    main()
