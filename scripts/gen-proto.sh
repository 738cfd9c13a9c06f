#!/usr/bin/env bash
# Generates the Python gRPC code and its type stubs from api/proto into src/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"  # protoc finds the mypy-protobuf plugins here
for proto in $(cd api/proto && find realchat -name "*.proto" | sort); do
  "$py" -m grpc_tools.protoc -I api/proto \
    --python_out=src --grpc_python_out=src \
    --mypy_out=quiet:src --mypy_grpc_out=quiet:src \
    "$proto"
done
