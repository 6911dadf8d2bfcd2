# insight, CPU image: python:3.11-slim, non-root, everything under the /data volume.
#   docker build -t insight-sidecar .
#   docker run -p 8096:8096 -v insight-data:/data insight-sidecar            (single box)
# docker-compose.yml runs it against NATS + Qdrant; docs/deployment.md explains both.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel needs (see .dockerignore): metadata first, then the package.
COPY pyproject.toml README.md ./
COPY insight ./insight
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install ".[qdrant,watcher]" \
 && /opt/venv/bin/python -c "import insight, onnxruntime, usearch, av, soxr, qdrant_client"

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INSIGHT_SERVER__HOST=0.0.0.0 \
    INSIGHT_SERVER__PORT=8096 \
    INSIGHT_STORAGE__DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    XDG_CACHE_HOME=/data/cache
# Models are downloaded to $INSIGHT_STORAGE__DATA_DIR/models (and the hub cache to $HF_HOME):
# both on the /data volume, so a new container does not download them again.
RUN groupadd --system --gid 10001 insight \
 && useradd --system --uid 10001 --gid insight --home-dir /data --shell /usr/sbin/nologin insight \
 && mkdir -p /data && chown insight:insight /data
COPY --from=build /opt/venv /opt/venv
USER insight
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8096
# No curl in slim images: the check is Python's urllib against the real path.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=5 \
  CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8096/api/v1/health', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["insight"]
CMD ["serve"]
