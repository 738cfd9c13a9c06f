#!/bin/sh
# The health check's command in the official image; here a metadata request with kcat (a real
# answer from the broker, like the original's API versions request).
set -eu
bootstrap=localhost:9092
while [ $# -gt 0 ]; do
  case "$1" in
    --bootstrap-server) bootstrap=$2; shift 2 ;;
    *) shift ;;
  esac
done
exec kcat -b "$bootstrap" -L -m 10 > /dev/null
