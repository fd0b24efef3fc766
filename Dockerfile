# royalflow services image: one image, every service (`royalflow attribution run`,
# `royalflow ledger run`, `royalflow api serve`, `royalflow families train`).
#
#   docker build -t royalflow:0.1.0 .                                   # CPU torch (~1 GB smaller)
#   docker build -t royalflow:0.1.0-cuda --build-arg TORCH_VARIANT=cuda .   # GPU agent
#
# The cuda variant installs PyPI's Linux torch wheel, which is the CUDA build and brings the
# CUDA runtime as nvidia-* wheels: the host needs only the NVIDIA driver and the NVIDIA
# Container Toolkit (compose reserves the device with deploy.resources.reservations.devices).
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0

FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/royalflow royalflow \
    && install -d -o royalflow -g royalflow /families
WORKDIR /app

FROM base AS torch-cpu
ARG TORCH_VERSION
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

FROM base AS torch-cuda
ARG TORCH_VERSION
RUN pip install "torch==${TORCH_VERSION}"

FROM torch-${TORCH_VARIANT} AS app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
# Editable on purpose: contracts read the JSON Schemas from schemas/ next to services/.
RUN pip install -e . && python -c "import royalflow.cli"
USER royalflow
ENV ROYALFLOW_STATE_DIR=/var/lib/royalflow ROYALFLOW_FAMILIES_DIR=/families
ENTRYPOINT ["royalflow"]
CMD ["--help"]
