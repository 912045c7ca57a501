# The reference inference service (service/) in an image: CPU by default, CUDA by
# build argument, never any weights downloaded (models are registered in code).
#
#   docker build -t perfgate-service .                          # CPU torch, python:3.11-slim
#   docker build -t perfgate-service:cuda --build-arg VARIANT=cuda .
#   docker run -p 8000:8000 perfgate-service                    # then GET :8000/ready
#
# Build arguments:
#   BASE_IMAGE   Debian-based image, with or without Python (a bare one gets Debian's
#                python3 from apt); default the official python:3.11-slim
#   VARIANT      cpu (default) or cuda: which torch build (run the cuda image with the
#                GPUs passed in: docker run --gpus all / podman run --device nvidia.com/gpu=all)
#   TORCH_INDEX  the wheel index torch comes from; default by VARIANT
#                (download.pytorch.org/whl/cpu or /cu128), "none": only WHEELS and PyPI
#   WHEELS       a folder of wheels in the build context installed from first (offline
#                builds; scripts/container_setup.sh passes torch's CPU wheel this way)
#   PIP_OPTIONS  more pip options for every install, e.g. --no-index (with WHEELS)
#   TORCH_VERSION  default 2.13.0, as pyproject.toml's "service" extra pins it
# Stages: "service" (the default, last) and "loadtest" (the gate and Locust, for
# compose.yaml's loadtest profile). Needs BuildKit or buildah (RUN --mount).

ARG BASE_IMAGE=python:3.11-slim

# --- Python on the base: the official images have it; a bare Debian gets Debian's -------
FROM ${BASE_IMAGE} AS python
RUN if ! command -v python3 >/dev/null 2>&1; then \
      apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         python3 ca-certificates >/dev/null \
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    fi

# --- the service's dependencies in a virtual environment (not in the final image's layers)
FROM python AS build
RUN if ! python3 -c "import ensurepip" >/dev/null 2>&1; then \
      apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         python3-venv >/dev/null; \
    fi \
    && python3 -m venv /opt/venv
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=
ARG WHEELS=
ARG PIP_OPTIONS=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, from its own index; then the "service" extra of pyproject.toml (read from
# it, so the two never differ) and psutil, from PyPI. torch's tests and C++ headers, pip
# and setuptools are left out of the image (about 150 MB).
RUN --mount=type=bind,target=/ctx \
    set -eu; \
    index="$TORCH_INDEX"; \
    if [ -z "$index" ]; then \
      case "$VARIANT" in \
        cpu) index=https://download.pytorch.org/whl/cpu ;; \
        cuda) index=https://download.pytorch.org/whl/cu128 ;; \
        *) echo "VARIANT: cpu or cuda, got '$VARIANT'" >&2; exit 2 ;; \
      esac; \
    fi; \
    set -- $PIP_OPTIONS; \
    if [ -n "$WHEELS" ]; then set -- "$@" --find-links "/ctx/$WHEELS"; fi; \
    if [ "$index" != none ]; then set -- "$@" --extra-index-url "$index"; fi; \
    /opt/venv/bin/pip install -q "$@" "torch==$TORCH_VERSION"; \
    /opt/venv/bin/python -c "import tomllib; p = tomllib.load(open('/ctx/pyproject.toml', 'rb'))['project']; print('\n'.join([d for d in p['optional-dependencies']['service'] if not d.startswith('torch')] + [d for d in p['dependencies'] if d.startswith('psutil')]))" > /tmp/requirements.txt; \
    /opt/venv/bin/pip install -q "$@" -r /tmp/requirements.txt; \
    site=$(/opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))"); \
    rm -rf "$site/torch/test" "$site/torch/include" "$site/torch/share/cmake"; \
    find /opt/venv -name __pycache__ -prune -exec rm -rf {} +; \
    /opt/venv/bin/pip uninstall -q -y pip setuptools

# --- the gate, pytest and Locust on top (compose.yaml's loadtest profile) -----------------
FROM build AS build-loadtest
RUN /opt/venv/bin/python -m ensurepip >/dev/null
COPY pyproject.toml README.md LICENSE /src/
COPY pytest_perfgate /src/pytest_perfgate
ARG WHEELS=
ARG PIP_OPTIONS=
RUN --mount=type=bind,target=/ctx \
    /opt/venv/bin/python -m pip install -q $PIP_OPTIONS ${WHEELS:+--find-links "/ctx/$WHEELS"} /src

FROM python AS runtime
RUN useradd --system --uid 10001 --create-home --home-dir /home/perfgate perfgate
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
EXPOSE 8000

FROM runtime AS loadtest
COPY --from=build-loadtest /opt/venv /opt/venv
COPY service /app/service
COPY thresholds.yaml /app/
COPY tests/load/ /app/tests/load/
RUN mkdir -p /results && chown perfgate /results
USER perfgate
ENTRYPOINT []
CMD ["pytest", "thresholds.yaml", "-m", "load_light", "-p", "no:cacheprovider", "--rootdir", "/app", \
     "--perfgate-url", "http://service:8000", "--perfgate-results-dir", "/results"]

# --- the service (the default target) -----------------------------------------------------
FROM runtime AS service
COPY --from=build /opt/venv /opt/venv
COPY service /app/service
USER perfgate
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]
ENTRYPOINT ["python", "-m", "service"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--device", "auto", "--models", "mlp,encoder"]
