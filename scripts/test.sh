#!/usr/bin/env bash
# The one test command (README, CI): prepare the host, lint, type-check, run every test.
# Integration tests start their own sshd on loopback with generated keys.
set -euo pipefail
cd "$(dirname "$0")/.."
RESPONDER_WITH_BROWSER=1 RESPONDER_WITH_IMAGE=1 bash scripts/prepare-host.sh
echo "== ruff"; .venv/bin/ruff check responder tests bench runbooks
.venv/bin/ruff format --check responder tests bench runbooks
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
