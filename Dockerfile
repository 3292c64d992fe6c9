# pathssl as a Grand-Challenge algorithm. Build with ./build.sh, check with ./test.sh.
#
# Base: PyTorch built for CUDA 12.8: runs on NVIDIA drivers >= 525.60.13 (CUDA minor-version
# compatibility) on T4 (sm_75, ml.g4dn) and A10G (sm_86, ml.g5), the GPUs Grand-Challenge runs
# jobs on (grand-challenge.org 9957bfc, components/backends/amazon_sagemaker_base.py); a CUDA 13
# build would need >= 580. The platform sets no driver for its SageMaker training jobs and AWS
# publishes none for them; its inference hosts of these families default to 470 / CUDA 11.4
# (docs.aws.amazon.com/sagemaker/latest/dg/inference-gpu-drivers.html), where no 12.x build runs
# without cuda-compat, which is not added (not buildable or testable here): such a job stops at
# start with one line. Decision and evidence: docs/grand-challenge-unicorn.md, "GPU driver".
# Its torch must equal the torch pin in requirements.txt (a test checks the tag). Give another
# base with PYTORCH_IMAGE=... ./build.sh.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.14.1-cuda12.8-cudnn9-runtime
FROM --platform=linux/amd64 ${PYTORCH_IMAGE}

# No network at run time: every hub offline. Nothing is written beside the code: caches and
# temporary files go to /tmp (a volume on the platform and in test.sh).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    TORCHINDUCTOR_CACHE_DIR=/tmp/.cache/torchinductor \
    PYTHONPATH=/opt/app/src

WORKDIR /opt/app

# Every package on top of the base, pinned with hashes (tools/lock_image_requirements.py);
# --no-deps keeps the base's torch, pip check proves the set consistent.
COPY requirements-image.lock /opt/app/
RUN python -m pip install --no-cache-dir --require-hashes --no-deps -r /opt/app/requirements-image.lock \
    && python -m pip check

# Code and model belong to root and are read-only for the user who runs them.
COPY src /opt/app/src
COPY model /opt/app/model
COPY resources /opt/app/resources
COPY process.py /opt/app/
RUN chmod -R a-w,a+rX /opt/app

# A numeric non-root user with no home of its own (Grand-Challenge runs images as non-root).
USER 1000:1000

ENTRYPOINT ["python", "process.py"]
