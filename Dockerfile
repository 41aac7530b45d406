# deliverability-exporter: a small, non-root image.
#   docker build -t deliverability-exporter .
#   docker run -p 9866:9866 -v $PWD/config.yml:/etc/deliverability-exporter/config.yml:ro deliverability-exporter
# The config (and, optionally, the web config for TLS and basic auth) are mounted files:
#   /etc/deliverability-exporter/config.yml      --config.file (default below)
#   /etc/deliverability-exporter/web-config.yml  add --web.config.file=/etc/deliverability-exporter/web-config.yml
# State that survives a restart (report counters, seen report ids, event de-duplication) is one
# SQLite file in the volume /var/lib/deliverability-exporter (--storage.path): mount a volume there.
# Secrets (SMTP/IMAP passwords, AWS credentials) come from mounted files or the environment,
# never from the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# pip is not needed at run time: removing it keeps the image smaller.
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall -y pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="deliverability-exporter" \
      org.opencontainers.image.description="Prometheus exporter for email deliverability: SPF, DKIM, DMARC, MX, DNS blacklists, mail-server TLS, AWS SES and a synthetic round trip" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 exporter \
 && useradd --system --uid 10001 --gid exporter --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin exporter \
 && mkdir -p /etc/deliverability-exporter /var/lib/deliverability-exporter \
 && chown 10001:10001 /var/lib/deliverability-exporter
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /usr/local/lib/deliverability-exporter/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 9866
VOLUME ["/var/lib/deliverability-exporter"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "/usr/local/lib/deliverability-exporter/healthcheck.py"]
ENTRYPOINT ["deliverability-exporter"]
CMD ["--config.file=/etc/deliverability-exporter/config.yml", "--web.listen-address=:9866", \
     "--storage.path=/var/lib/deliverability-exporter"]
