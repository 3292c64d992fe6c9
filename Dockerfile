# pathssl as a Grand-Challenge algorithm. Build with ./build.sh, check with ./test.sh.
# The base image's torch must equal the torch pin in requirements.txt (a test checks the tag),
# so that pip keeps the image's CUDA build instead of installing a second one.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM --platform=linux/amd64 ${PYTORCH_IMAGE}

# No network at run time: keep every hub offline; caches go to the user's home.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    PYTHONPATH=/opt/app/src

RUN groupadd -r user && useradd -m --no-log-init -r -g user user

WORKDIR /opt/app

# OpenSlide comes from the openslide-bin wheel pinned in requirements.txt (no system package).
COPY --chown=user:user requirements.txt /opt/app/
RUN python -m pip install --no-cache-dir -r /opt/app/requirements.txt

COPY --chown=user:user src /opt/app/src
COPY --chown=user:user model /opt/app/model
COPY --chown=user:user resources /opt/app/resources
COPY --chown=user:user process.py /opt/app/

USER user

ENTRYPOINT ["python", "process.py"]
