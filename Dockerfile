# deliverability-exporter: a small, non-root image.
#   docker build -t deliverability-exporter .
#   podman build --format docker -t deliverability-exporter .   # see HEALTHCHECK below
#   docker run -p 9866:9866 -v $PWD/config.yml:/etc/deliverability-exporter/config.yml:ro deliverability-exporter
# The config (and, optionally, the web config for TLS and basic auth) are mounted files:
#   /etc/deliverability-exporter/config.yml      --config.file (default below)
#   /etc/deliverability-exporter/web-config.yml  add --web.config.file=/etc/deliverability-exporter/web-config.yml
# State that survives a restart (report counters, seen report ids, event de-duplication) is one
# SQLite file in the volume /var/lib/deliverability-exporter (--storage.path): mount a volume there.
# Secrets (SMTP/IMAP passwords, AWS credentials) come from mounted files or the environment,
# never from the image.
# It is also the working directory.
# Read-only root (docker run --read-only): the exporter writes only to that volume; the demo
# also needs a temporary directory: --tmpfs /tmp (podman mounts one by itself), or TMPDIR.
# HEALTHCHECK is a Docker-format instruction: podman and buildah build OCI images by default and
# drop it (with a warning); build with --format docker to keep it.
# Dependency versions are pinned by constraints.txt (the versions the tests ran on, written by
# scripts/lock_deps.py): an image built later installs the same ones.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Optional, for a package mirror or a TLS-intercepting proxy (the CA file mounted at build time).
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY exporter ./exporter
# pip is not needed at run time: removing it keeps the image smaller.
RUN /opt/venv/bin/pip install --constraint constraints.txt . \
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
WORKDIR /var/lib/deliverability-exporter
VOLUME ["/var/lib/deliverability-exporter"]
EXPOSE 9866
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "/usr/local/lib/deliverability-exporter/healthcheck.py"]
ENTRYPOINT ["deliverability-exporter"]
CMD ["--config.file=/etc/deliverability-exporter/config.yml", "--web.listen-address=:9866", \
     "--storage.path=/var/lib/deliverability-exporter"]
