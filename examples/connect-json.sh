#!/usr/bin/env bash
# The Connect protocol with curl: a POST of JSON per call.
# Run: CACONNECTOR_URL=http://127.0.0.1:8080 TOKEN=... examples/connect-json.sh
set -euo pipefail
url="${CACONNECTOR_URL:-http://127.0.0.1:8080}"
service="$url/caconnector.v1.CaConnectorService"

curl -sS -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"name": "example-json", "type": "microsoft",
       "config": {"hostname": "worker.example", "port": "50061"}}' \
  "$service/SaveCaConnector"
echo

curl -sS -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"name": "example-json"}' "$service/GetCaConnector"
echo
