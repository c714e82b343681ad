# The CDC daemon. Build: docker build -t cdc .   Run: mount the config at /etc/cdc/config.yaml.
# The full image has a C compiler: the wheel carries the C accelerator (setup.py).
FROM python:3.11 AS build
WORKDIR /src
# README.m[d]: the glob lets the build work before the README exists.
COPY setup.cfg setup.py pyproject.toml README.m[d] ./
COPY cdc ./cdc
COPY connectors ./connectors
COPY mappers ./mappers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/cdc --shell /usr/sbin/nologin cdc \
    && mkdir -p /etc/cdc /var/lib/cdc \
    && chown cdc:cdc /var/lib/cdc
# Offsets (file store) live here; mount a volume to keep them across restarts.
VOLUME ["/var/lib/cdc"]
USER 10001:10001
EXPOSE 9400
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=4)"]
ENTRYPOINT ["cdc"]
CMD ["run", "/etc/cdc/config.yaml"]
