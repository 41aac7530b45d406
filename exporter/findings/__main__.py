"""``python -m exporter.findings > docs/FINDINGS.md``."""

import sys

from exporter.findings import render_markdown

sys.stdout.write(render_markdown())
