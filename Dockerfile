# user-limits as a service: `docker build -t user-limits . && docker run user-limits` runs the demo;
# `docker run -p 8000:8000 -e USER_LIMITS_JWT_SECRET=... user-limits serve --host 0.0.0.0` serves
# the API, the page and /metrics; `docker run user-limits consume --stream NAME ...` runs the consumer.
# The store defaults to SQLite in the volume /data; set USER_LIMITS_STORE for PostgreSQL or DynamoDB.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# 1 with a wheels/ folder in the build context holding every locked wheel: no index, no network.
ARG PIP_NO_INDEX=0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
# The locked versions, every file checked against its hash; this layer changes only with the lock.
# wheels/ is optional (the pattern matches nothing without it).
COPY requirements/service.txt wheel[s] /build/wheels/
RUN python -m venv /opt/user-limits \
    && /opt/user-limits/bin/pip install --no-deps --require-hashes --find-links /build/wheels \
        -r /build/wheels/service.txt
COPY pyproject.toml README.md /build/project/
COPY src /build/project/src
RUN /opt/user-limits/bin/pip install --no-deps --find-links /build/wheels /build/project \
    && /opt/user-limits/bin/python -m compileall -q /opt/user-limits/lib

FROM ${BASE}
ENV PATH=/opt/user-limits/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    USER_LIMITS_STORE=sqlite:////data/user-limits.db
RUN groupadd --system --gid 10001 user-limits \
    && useradd --uid 10001 --gid user-limits --home-dir /data --create-home --shell /usr/sbin/nologin user-limits
COPY --from=build /opt/user-limits /opt/user-limits
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# serve: GET /healthz on its port; consume --metrics-port: GET /metrics; a one-off command: healthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "user_limits.container_health"]
ENTRYPOINT ["user-limits"]
CMD ["demo"]
