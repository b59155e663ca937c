# mcp-imagegen over streamable HTTP (docs/deploy.md).
#
#   docker build -t registry.example.com/team/mcp-imagegen:0.1.0 .
#   docker build --build-arg EXTRAS=s3,tensors -t ... .   # extras: s3, tensors, all, or ""
#
# The configuration is read from /etc/mcp-imagegen/config.toml (mount a file or a
# ConfigMap there); secrets come from the environment. tests/deploy/ runs this
# image's entrypoint, command and environment against a wheel built the same way.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the wheel, and a venv with it and its dependencies -----------------
FROM ${PYTHON_IMAGE} AS build
# Optional dependencies ([project.optional-dependencies]); s3 for S3 storage.
ARG EXTRAS=s3
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md config.example.toml ./
COPY core core
COPY plugins plugins
# The venv is copied whole into the runtime stage: same base image, same path,
# so its interpreter links stay valid; the build backend (hatchling) lives only
# in pip's isolated build environment and never reaches the venv.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/mcp-imagegen \
    && wheel="$(ls /wheels/mcp_imagegen-*.whl)" \
    && /opt/mcp-imagegen/bin/pip install "${wheel}${EXTRAS:+[${EXTRAS}]}" \
    && /opt/mcp-imagegen/bin/pip uninstall --yes pip

# --- runtime: the venv on a slim Python, as a fixed non-root uid ----------------
FROM ${PYTHON_IMAGE} AS runtime
# A fixed uid/gid, so runAsUser/fsGroup in the manifests and volume ownership agree.
RUN groupadd --system --gid 10001 mcp \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin mcp
COPY --from=build /opt/mcp-imagegen /opt/mcp-imagegen
# HOME=/tmp: the root filesystem is read-only in Kubernetes; /tmp is the writable
# emptyDir. Logs are JSON lines on stderr; no .pyc writes at run time.
ENV PATH=/opt/mcp-imagegen/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MCP_IMAGEGEN_CONFIG=/etc/mcp-imagegen/config.toml \
    MCP_IMAGEGEN_LOGGING__FORMAT=json
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# No curl in the image: the interpreter itself asks /healthz (urlopen raises on
# anything but 2xx, which exits 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["mcp-imagegen"]
CMD ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
