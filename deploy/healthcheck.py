"""Container HEALTHCHECK: GET /-/healthy on the exporter's own port, standard library only.

Plain HTTP first, then HTTPS (when --web.config.file enables TLS; the certificate is not
verified: this is a loopback liveness check of our own server). With basic auth enabled every
endpoint answers 401 without credentials, which still proves the server is serving, so 401
counts as healthy and no password has to be put in the container's environment.
Set HEALTHCHECK_URL to check another address. Exit 0 healthy, 1 unhealthy.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

PORT = os.environ.get("HEALTHCHECK_PORT", "9866")


def healthy(url: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except (OSError, ValueError):
        return False


def main() -> int:
    url = os.environ.get("HEALTHCHECK_URL")
    default = [f"{scheme}://127.0.0.1:{PORT}/-/healthy" for scheme in ("http", "https")]
    urls = [url] if url else default
    return 0 if any(healthy(u) for u in urls) else 1


if __name__ == "__main__":
    sys.exit(main())
