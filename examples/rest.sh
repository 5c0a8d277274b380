#!/usr/bin/env bash
# The privacyIDEA-compatible REST API with curl.
# Run: CACONNECTOR_URL=http://127.0.0.1:8080 TOKEN=... examples/rest.sh
set -euo pipefail
url="${CACONNECTOR_URL:-http://127.0.0.1:8080}"

# Create or update (form body, as the privacyIDEA WebUI sends it).
curl -sS -H "Authorization: $TOKEN" \
  -d type=local -d cakey=/etc/ca/key.pem -d cacert=/etc/ca/cert.pem \
  "$url/caconnector/example-rest"
echo

# The same with a JSON body: numbers and booleans are stored as text.
curl -sS -H "Authorization: $TOKEN" -H "Content-Type: application/json" \
  -d '{"type": "local", "CRL_Validity_Period": 30}' \
  "$url/caconnector/example-rest"
echo

# Read one, then all.
curl -sS -H "Authorization: $TOKEN" "$url/caconnector/example-rest"
echo
curl -sS -H "Authorization: $TOKEN" "$url/caconnector/"
echo
