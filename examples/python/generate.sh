#!/bin/sh
# Generate the Python stubs of the Sluice gRPC API from proto/ into OUT
# (default: ./gen next to this script). Needs grpcio-tools: Debian
# python3-grpcio + python3-grpc-tools, or `pip install grpcio-tools`.
#
#   ./generate.sh [OUT]
#   PYTHON=python3 ./generate.sh /tmp/stubs
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
PROTO=$(cd "$HERE/../../proto" && pwd)
OUT=${1:-$HERE/gen}
PYTHON=${PYTHON:-/usr/bin/python3}

mkdir -p "$OUT"
cd "$PROTO"
# The data plane (lookup, produce, consume and the batch format) is all the
# producer and consumer need.
"$PYTHON" -m grpc_tools.protoc -I "$PROTO" --python_out="$OUT" --grpc_python_out="$OUT" \
  sluice/v1/broker.proto sluice/v1/batch.proto

# admin.proto uses proto3 `optional` fields, which need protoc >= 3.15. Debian
# 12's python3-grpc-tools (1.14) bundles protoc 3.5 and refuses them; pip's
# grpcio-tools is new enough. The examples do not use AdminService, so an old
# protoc only costs the admin stubs.
if ! "$PYTHON" -m grpc_tools.protoc -I "$PROTO" --python_out="$OUT" --grpc_python_out="$OUT" \
  sluice/v1/admin.proto 2>/dev/null; then
  echo "generate.sh: skipped admin.proto: this grpc_tools bundles $("$PYTHON" -m grpc_tools.protoc --version), which predates proto3 'optional' (needs >= 3.15)" >&2
fi
echo "stubs in $OUT" >&2
