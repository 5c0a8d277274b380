#!/usr/bin/env bash
# gRPC with grpcurl over h2c, using the server's reflection instead of the
# protos. Reflection needs no token; calls do.
# Run: CACONNECTOR_ADDRESS=127.0.0.1:8080 TOKEN=... \
#   GRPCURL=$(npm run --silent grpcurl) examples/grpcurl.sh
set -euo pipefail
address="${CACONNECTOR_ADDRESS:-127.0.0.1:8080}"
grpcurl="${GRPCURL:-grpcurl}"
service=caconnector.v1.CaConnectorService

# Which services the server offers, then what one of them looks like.
"$grpcurl" -plaintext "$address" list
"$grpcurl" -plaintext "$address" describe "$service.ListCaConnectors"

# A call: the request is JSON, the reply is printed as JSON.
"$grpcurl" -plaintext -H "authorization: Bearer $TOKEN" \
  -d '{"type": "local"}' "$address" "$service/ListCaConnectors"
