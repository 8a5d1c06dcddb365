# syntax=docker/dockerfile:1
# Fansipan image: the `fansipan` command (collector, simulator, profile checks).
#   docker build -t fansipan .
#   docker run --rm fansipan profiles check
#   docker run --rm --env-file .env fansipan collect --heartbeat-file /tmp/fansipan-collector.alive
# compose.yaml builds this image for its collector service.

# --- build: wheels for the project and every dependency (no compiler in the final image)
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# .dockerignore keeps secrets, .git, .venv, tests and local state out of the context.
COPY . .
RUN pip wheel --wheel-dir /wheels .

# --- runtime
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# A fixed, non-root uid/gid (10001), so volume ownership is predictable and Kubernetes
# runAsNonRoot can check it. /var/lib/fansipan is the working directory, for local state
# (compose mounts a volume there). A named volume that is still empty inherits this
# ownership.
RUN groupadd --system --gid 10001 fansipan \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fansipan --no-create-home \
        --shell /usr/sbin/nologin fansipan \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/fansipan
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels fansipan \
 && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/fansipan
# Container health check for the collector: run it with `collect --heartbeat-file
# /tmp/fansipan-collector.alive` and test the file's age (compose.yaml does both).
# There is no HEALTHCHECK here because the same image also runs one-off commands.
ENTRYPOINT ["fansipan"]
CMD ["--help"]
