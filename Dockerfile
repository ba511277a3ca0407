# tflock: the Slack bot and `tflock-bot` CLI. Two stages: wheels and a virtualenv are built in the first,
# the second is a slim runtime (no compilers, no pip cache, no source tree) running as UID 10001.
#
# Base image: pinned by full version tag. Its digest could not be looked up where this file was written
# (no registry access); pin it for reproducible builds with
#   docker buildx imagetools inspect python:3.11.16-slim-bookworm
#   docker build --build-arg PYTHON_IMAGE=python:3.11.16-slim-bookworm@sha256:<digest> .
# Both stages must use the same image: the virtualenv's python links to the base image's interpreter.
ARG PYTHON_IMAGE=python:3.11.16-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The dependencies first, exactly as locked: every file's hash must match requirements/runtime.txt (the
# export of uv.lock, see scripts/lock.sh), and only wheels are taken (psycopg[binary] included), so no
# compiler is needed even here. This layer is rebuilt only when the lock changes.
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN python -m venv /opt/tflock \
 && /opt/tflock/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements/runtime.txt
# Then tflock itself, from only what the wheel is built from (pyproject reads README.md; migrations/ ships
# inside the wheel as bot.migrations); .dockerignore keeps the rest out. --no-deps: nothing unlocked.
# The build backend is locked too (requirements/build.txt): no build isolation fetching an unpinned setuptools.
# Last, what nothing runs is removed: pip and setuptools (nothing is installed at run time) and the test
# suites numpy and matplotlib ship (23 MB; the charts of /tflock report need the libraries, not their tests).
COPY requirements/build.txt ./requirements/build.txt
COPY pyproject.toml README.md ./
COPY bot/ ./bot/
COPY migrations/ ./migrations/
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements/build.txt \
 && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/tflock/bin/pip install --no-cache-dir --no-index --no-deps /wheels/*.whl \
 && /opt/tflock/bin/pip check \
 && /opt/tflock/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && rm -rf /opt/tflock/lib/python3.*/site-packages/numpy/*/tests /opt/tflock/lib/python3.*/site-packages/numpy/*/*/tests \
    /opt/tflock/lib/python3.*/site-packages/matplotlib/tests

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tflock" \
      org.opencontainers.image.description="Slack bot for Terraform/OpenTofu S3-backend state locks" \
      org.opencontainers.image.licenses="Apache-2.0"
# Numeric IDs so Kubernetes can verify runAsNonRoot; no home, no login shell.
RUN groupadd --system --gid 10001 tflock \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin tflock
COPY --from=builder /opt/tflock /opt/tflock
WORKDIR /app
# Nothing is written outside /tmp at run time: no bytecode, HOME in /tmp, and the fallback SQLite
# database in /tmp (throw-away; production sets TFLOCK_DATABASE_URL to PostgreSQL).
ENV PATH=/opt/tflock/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TFLOCK_DATABASE_URL=sqlite:////tmp/tflock.db \
    TFLOCK_PORT=3000
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TFLOCK_PORT', '3000'), timeout=4)"]
ENTRYPOINT ["tflock-bot"]
CMD ["serve"]
