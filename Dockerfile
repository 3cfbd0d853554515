# The turnstream image: the package, its console script and the example packs.
# One image for every role: `turnstream worker --role ROLE` (see docker-compose.yml).
#
#   docker build -t turnstream:0.1.0 .
#
# The install pulls torch through sentence-transformers (several GB of wheels from PyPI);
# a BuildKit cache mount keeps the downloaded wheels between builds, so a source change
# reinstalls without downloading again. PIP_INDEX_URL / PIP_EXTRA_INDEX_URL can be passed
# as build args (a mirror, or a CPU-only torch index to make the image smaller).
FROM python:3.11-slim-bookworm

ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

WORKDIR /app

# What `pip install .` reads: the project file, the readme it names, the four packages and
# the example packs' tools (the package packs.tools; the packs' files come below).
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY processors ./processors
COPY streams ./streams
COPY sinks ./sinks
COPY packs/tools ./packs/tools
COPY packs/__init__.py ./packs/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
    && rm -rf build ./*.egg-info

# Packs last: editing a pack does not reinstall anything. Python tools of a pack read their
# data files under TURNSTREAM_PACKS_DIR; `turnstream pack load packs/...` runs from /app.
COPY packs ./packs

RUN useradd --system --uid 10001 --home-dir /var/lib/turnstream turnstream \
    && mkdir -p /var/lib/turnstream \
    && chown turnstream /var/lib/turnstream
USER turnstream

# Settings come only from TURNSTREAM_* variables (streams/settings.py); these two are the
# image's layout. The data dir holds per-process scratch only (Faust's data dir): state
# lives in Kafka changelogs, Qdrant and ClickHouse.
ENV TURNSTREAM_DATA_DIR=/var/lib/turnstream \
    TURNSTREAM_PACKS_DIR=/app/packs

CMD ["turnstream", "worker", "--role", "all"]
