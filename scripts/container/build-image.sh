#!/usr/bin/env bash
# Build the responder container image from a wheel of this checkout.
#
#   scripts/container/build-image.sh [TAG] [extra docker build arguments...]
#
# The build context holds only the Dockerfile and dist/ (the wheel; with RESPONDER_WHEELHOUSE set,
# that directory's wheels too, for a build without network access).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-responder:latest}
shift || true
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && python=${PYTHON:-.venv/bin/python}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/dist"
if [ -n "${RESPONDER_WHEELHOUSE:-}" ]; then
  cp "$RESPONDER_WHEELHOUSE"/*.whl "$context/dist/"
fi
rm -f "$context"/dist/responder-*.whl  # this checkout's wheel, never an older one
"$python" -m pip wheel --no-deps --no-build-isolation -q -w "$context/dist" .
cp scripts/container/Dockerfile "$context/Dockerfile"
DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -q -t "$tag" "$@" "$context"
