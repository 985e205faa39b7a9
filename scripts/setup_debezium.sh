#!/usr/bin/env bash
# Register the Debezium PostgreSQL connector with Kafka Connect and wait until it runs.
#
#   ./scripts/setup_debezium.sh [CONFIG.json]      (default: infra/debezium/opensky-postgres.json)
#
# The connector's name is the file's "name" (else the file's name without .json). `${VAR}` placeholders in the file are
# filled from the environment, then from infra/.env (the environment wins). PostgreSQL's address is
# the one the *Connect worker* uses: 127.0.0.1 natively, the service name `postgres` in docker
# compose; set DEBEZIUM_DATABASE_HOST / DEBEZIUM_DATABASE_PORT to override it.
# Registering is idempotent (PUT of the config): run it again after editing the file.
# Needs curl, and python3 to read Connect's JSON answers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG="${1:-$ROOT/infra/debezium/opensky-postgres.json}"
WAIT_S="${SETUP_DEBEZIUM_TIMEOUT:-90}"

die() { echo "setup_debezium: $*" >&2; exit 1; }
[[ -f "$CONFIG" ]] || die "no connector config at $CONFIG"
command -v curl >/dev/null || die "curl is needed"
PYTHON="$ROOT/.venv/bin/python"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3 || true)"
[[ -n "$PYTHON" ]] || die "python3 is needed to read Kafka Connect's answers"

# infra/.env: KEY=VALUE lines; a variable already in the environment is kept.
while IFS= read -r line || [[ -n "$line" ]]; do
  [[ "$line" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
  key="${BASH_REMATCH[1]}"
  value="${BASH_REMATCH[2]}"
  value="${value%\"}"; value="${value#\"}"; value="${value%\'}"; value="${value#\'}"
  [[ -n "${!key+set}" ]] || export "$key=$value"
done < "$ROOT/infra/.env"

CONNECT_URL="${CONNECT_URL:-http://${CONNECT_HOST}:${CONNECT_PORT}}"
CONNECT_URL="${CONNECT_URL%/}"
stack="${STACK:-auto}"
if [[ "$stack" == "auto" ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then stack=docker; else stack=native; fi
fi
if [[ "$stack" == "docker" ]]; then
  # Connect runs in a container: PostgreSQL is the compose service `postgres`, port 5432.
  POSTGRES_HOST="${DEBEZIUM_DATABASE_HOST:-postgres}"
  POSTGRES_PORT="${DEBEZIUM_DATABASE_PORT:-5432}"
else
  POSTGRES_HOST="${DEBEZIUM_DATABASE_HOST:-$POSTGRES_HOST}"
  POSTGRES_PORT="${DEBEZIUM_DATABASE_PORT:-$POSTGRES_PORT}"
fi

body="$(cat "$CONFIG")"
# Fill every ${VAR} (Kafka Connect's own ${provider:path:key} references have a colon: left alone).
for var in $(grep -oE '\$\{[A-Za-z_][A-Za-z0-9_]*\}' "$CONFIG" | sort -u | tr -d '${}'); do
  [[ -n "${!var+set}" ]] || die "$CONFIG uses \${$var}, which is neither in the environment nor in infra/.env"
  value="${!var}"
  value="${value//\\/\\\\}"   # JSON string escapes
  value="${value//\"/\\\"}"
  body="${body//"\${$var}"/$value}"
done

# Reads JSON on stdin, runs a Python expression on it as `j`, prints the result.
json() { "$PYTHON" -c "import json,sys; j=json.load(sys.stdin); r=$1; print(r if isinstance(r,str) else '\n'.join(map(str,r)))"; }
request() {  # METHOD PATH [BODY] -> prints the body, then the HTTP status on the last line
  local args=(-sS -X "$1" -H "Content-Type: application/json" -w '\n%{http_code}')
  [[ $# -ge 3 ]] && args+=(--data "$3")
  curl "${args[@]}" "$CONNECT_URL$2" || die "Kafka Connect does not answer at $CONNECT_URL (make up; make status)"
}

name="$(printf '%s' "$body" | json "j.get('name') or '$(basename "$CONFIG" .json)'")"
echo "Kafka Connect: $CONNECT_URL — connector $name, PostgreSQL as Connect sees it: $POSTGRES_HOST:$POSTGRES_PORT"

# 1. Validate: Connect lists every problem of the configuration, field by field.
class="$(printf '%s' "$body" | json 'j["connector.class"]')"
answer="$(request PUT "/connector-plugins/$class/config/validate" "$body")"
status="${answer##*$'\n'}"; answer="${answer%$'\n'*}"
[[ "$status" == 200 ]] || die "validation failed (HTTP $status): $answer"
errors="$(printf '%s' "$answer" | json '[c["value"]["name"] + ": " + e for c in j["configs"] if c.get("value") for e in c["value"]["errors"]]')"
[[ -z "$errors" ]] || die "Kafka Connect rejects the configuration:"$'\n'"$errors"

# 2. Create or update (idempotent): an unchanged config is left alone, a changed one is PUT.
answer="$(request GET "/connectors/$name/config")"
status="${answer##*$'\n'}"; answer="${answer%$'\n'*}"
same=False
if [[ "$status" == 200 ]]; then
  same="$(printf '%s\n%s' "$answer" "$body" | "$PYTHON" -c 'import json,sys; d=json.JSONDecoder(); t=sys.stdin.read(); a,i=d.raw_decode(t); b,_=d.raw_decode(t[i:].lstrip()); print(a==b)')"
fi
if [[ "$same" == True ]]; then
  echo "connector $name is already registered with this configuration"
else
  answer="$(request PUT "/connectors/$name/config" "$body")"
  status="${answer##*$'\n'}"; answer="${answer%$'\n'*}"
  case "$status" in
    201) echo "created connector $name" ;;
    200) echo "updated connector $name (it restarts)"
         # For a moment the status still shows the old RUNNING: wait (10 s at most) to see it change.
         for _ in $(seq 50); do
           answer="$(request GET "/connectors/$name/status")"
           [[ "$answer" == *RUNNING*RUNNING* && "$answer" != *UNASSIGNED* && "$answer" != *RESTARTING* ]] || break
           sleep 0.2
         done ;;
    *) die "PUT /connectors/$name/config answered HTTP $status: $answer" ;;
  esac
fi

# 3. Wait until the connector and its task run; a FAILED one prints its trace at once.
deadline=$((SECONDS + WAIT_S))
while :; do
  answer="$(request GET "/connectors/$name/status")"
  status="${answer##*$'\n'}"; answer="${answer%$'\n'*}"
  if [[ "$status" == 200 ]]; then
    states="$(printf '%s' "$answer" | json '[j["connector"]["state"]] + [t["state"] for t in j["tasks"]]' | tr '\n' ' ')"
    if [[ "$states" == *FAILED* ]]; then
      trace="$(printf '%s' "$answer" | json '[p.get("trace", "").splitlines()[0] for p in [j["connector"]] + j["tasks"] if p["state"] == "FAILED"]')"
      die "connector $name FAILED: $trace"$'\n'"Full trace: curl -s $CONNECT_URL/connectors/$name/status"
    fi
    running="$(printf '%s' "$answer" | json 'str(bool(j["tasks"]) and all(p["state"] == "RUNNING" for p in [j["connector"]] + j["tasks"]))')"
    if [[ "$running" == True ]]; then
      echo "connector $name: $states"
      break
    fi
  fi
  (( SECONDS < deadline )) || die "connector $name not RUNNING after ${WAIT_S} s (last answer: $answer)"
  sleep 1
done

prefix="$(printf '%s' "$body" | json 'j["topic.prefix"]')"
tables="$(printf '%s' "$body" | json 'j["table.include.list"].split(",")')"
echo "change events go to:"
for table in $tables; do echo "  $prefix.$table"; done
