# The reference stack in a container: `supervise run` as PID 1, as a non-root user.
#
#   docker build -t supervise-trading .
#   docker run --rm -p 8000:8000 -v ledgers:/data --stop-timeout 30 supervise-trading
#
# supervise reaps every process it adopts and stops the units in reverse dependency
# order on SIGTERM within shutdown_timeout (25 s in supervise.toml): give `docker stop`
# more than that (--stop-timeout 30; compose: stop_grace_period: 30s). The health port
# (/healthz, /readyz, /status) is $PORT on every interface; the control socket stays a
# Unix socket inside the container (`docker exec CONTAINER supervise status`).
# See README.md, "Running in a container"; tests/container/ checks this file.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The user the stack runs as: no login, no home, owns only what it must write.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin supervise

# The checkout is the stack: the units run `python -m services...` from here, the
# stack file's directory (services/ is not installed, only supervisor/ is).
WORKDIR /app
COPY . .
RUN pip install '.[reference]' && rm -rf build ./*.egg-info
# Written at run time, by the non-root user: the control socket's directory and the
# ledgers. Everything else in /app stays root's, read-only to the stack.
RUN install -d -o 10001 -g 10001 -m 0700 /app/.supervise \
    && install -d -o 10001 -g 10001 -m 0755 /data

# Health port on every interface of the container (supervise.toml reads both); ledgers
# on a volume, so a new container continues them (`python -m services.agent reset`).
ENV HTTP_HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000

USER 10001:10001
STOPSIGNAL SIGTERM
# slim has no curl: the image's python asks /readyz, which is 200 once every required
# unit is ready (503 before, or when one is not); any failure exits non-zero.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-I", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['PORT'], timeout=4)"]
ENTRYPOINT ["supervise", "run"]
