# syntax=docker/dockerfile:1
# remediator container image.
#
#   docker build -t remediator:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v remediator-state:/var/lib/remediator \
#     -e REMEDIATOR_WEBHOOK_TOKEN=... -e REMEDIATOR_OPERATOR_TOKEN=... \
#     -p 9095:9095 remediator:0.1.0
#
# The default config (deploy/docker/config.yaml) listens on 0.0.0.0:9095 and reads
# both tokens from the environment; each needs at least 16 characters, and the two
# must differ. REMEDIATOR_WEBHOOK_TOKEN is required (Alertmanager's bearer token).
# REMEDIATOR_OPERATOR_TOKEN opens the operator API (approve, reject, pause, resume,
# reload, the audit trail); without it those routes answer 403 on this non-loopback
# listener, never open, and `docker exec <container> remediator pause` (and the
# other operator commands) still work on the state store directly.
#
# The final image holds a virtualenv and nothing else of the build: no compiler, no
# pip cache, no source tree. It runs as uid 10001 with a read-only root filesystem;
# the only writable places are /tmp and the state volume (or use Postgres, which
# Kubernetes with several replicas needs: deploy/kubernetes).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: resolve and install the pinned wheels into /opt/venv ---------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The pins first, so the dependency layer is rebuilt only when they change.
COPY pyproject.toml constraints.txt README.md ./
COPY remediator ./remediator
# constraints.txt pins every transitive dependency, so pip never backtracks and the
# image gets exactly the versions the tests ran against.
RUN pip install -c constraints.txt . \
    && python -m compileall -q /opt/venv

# --- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="remediator" \
      org.opencontainers.image.description="Alertmanager webhook receiver that runs the safe parts of a runbook" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 remediator \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin remediator \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/remediator

COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/config.yaml /etc/remediator/config.yaml
COPY rules /etc/remediator/rules

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REMEDIATOR_CONFIG=/etc/remediator/config.yaml

# SQLite state (single replica) lives here; mount a volume, or set `state:` to Postgres.
VOLUME ["/var/lib/remediator"]
WORKDIR /var/lib/remediator
USER 10001:10001
EXPOSE 9095
ENTRYPOINT ["remediator", "serve"]
