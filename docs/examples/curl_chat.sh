#!/usr/bin/env bash
# The README's curl example. Usage: docs/examples/curl_chat.sh [BASE_URL]
set -euo pipefail
base="${1:-http://127.0.0.1:8000}"
model=$(curl -sf "$base/v1/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
curl -sf "$base/v1/chat/completions" -H 'Content-Type: application/json' -H 'X-Adapter: base' \
  -d "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}], \"max_tokens\": 32}"
