# The compute-budget planner service: `planner-server` on port 50051, SQLite under /var/lib/planner.
#   docker build -t compute-budget-planner .
#   docker run -p 50051:50051 -v planner-data:/var/lib/planner compute-budget-planner
# tests/container replays the build stage without Docker and lints this file with hadolint.

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# The pinned runtime dependencies first, so this layer is reused while only the source changes.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --no-cache-dir -r requirements/runtime.txt

COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY planner/ planner/
COPY planner_api/ planner_api/
COPY server/ server/
COPY clients/ clients/
RUN pip install --no-cache-dir --no-deps .


FROM python:3.11-slim-bookworm AS runtime

RUN groupadd --gid 10001 planner \
    && useradd --uid 10001 --gid planner --no-log-init --no-create-home \
        --home-dir /var/lib/planner --shell /usr/sbin/nologin planner \
    && install -d -o planner -g planner -m 0750 /var/lib/planner

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PLANNER_DATABASE_URL=sqlite:////var/lib/planner/planner.db \
    PLANNER_LISTEN=[::]:50051

WORKDIR /var/lib/planner
# The numeric id of `planner`, so that runtimes can verify it is not root (runAsNonRoot).
USER 10001:10001
EXPOSE 50051

# SERVING only once the database is migrated and the solver processes are warm.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["planner-server", "--health-check"]

# planner-server runs as PID 1 and stops gracefully on SIGTERM (docker stop).
STOPSIGNAL SIGTERM
ENTRYPOINT ["planner-server"]
