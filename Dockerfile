# bitget-monitor: the monitor, its status page and its migrations, as a slim non-root image.
#   docker build -t bitget-monitor .
#   docker run --env-file .env -v "$PWD/accounts.toml:/config/accounts.toml:ro" -p 127.0.0.1:8080:8080 bitget-monitor
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor monitor
COPY web web
COPY alembic alembic
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --home-dir /home/monitor --create-home monitor
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER monitor
# The alert spool's folder, owned by the user, so the compose file's named volume is too.
RUN mkdir -p /home/monitor/.local/state/bitget-monitor
WORKDIR /home/monitor
EXPOSE 8080
# The page must listen on all interfaces inside the container: set [web] listen = "0.0.0.0:8080" and a token,
# or publish the port on loopback only (as docker-compose.yml does) and pass --allow-public-without-auth.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["bitget-monitor"]
CMD ["run", "-c", "/config/accounts.toml", "--no-migrate"]
