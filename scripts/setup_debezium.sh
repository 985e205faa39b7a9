#!/usr/bin/env bash
# Register the Debezium PostgreSQL connector with Kafka Connect and wait until it runs.
#
#   ./scripts/setup_debezium.sh [CONFIG.json]      (default: infra/debezium/opensky-postgres.json)
#
# First the tables the connector captures (its table.include.list) must exist: each one is reported
# as `exists`, `created` (from its one definition in harness/runtime/schema.py) or, when there is no
# definition, waited for (SETUP_DEBEZIUM_TABLE_WAIT seconds, default 60).
# The connector's name is the file's "name" (else the file's name without .json). `${VAR}`
# placeholders in the file come from the environment, then from infra/.env, as everywhere in the
# harness (python -m harness.ops.cdc_setup render). PostgreSQL's address is the one the *Connect
# worker* uses: 127.0.0.1 natively, the service name `postgres` in docker compose; set
# DEBEZIUM_DATABASE_HOST / DEBEZIUM_DATABASE_PORT to override it.
# Registering is idempotent (PUT of the config): run it again after editing the file.
# Needs curl, and the repository's venv (make setup).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG="${1:-$ROOT/infra/debezium/opensky-postgres.json}"
WAIT_S="${SETUP_DEBEZIUM_TIMEOUT:-90}"

die() { echo "setup_debezium: $*" >&2; exit 1; }
[[ -f "$CONFIG" ]] || die "no connector config at $CONFIG"
command -v curl >/dev/null || die "curl is needed"
PYTHON="$ROOT/.venv/bin/python"   # the repository's venv; in the jupyter container, its python3
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3 || true)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
[[ -n "$PYTHON" ]] && "$PYTHON" -c 'import psycopg, harness.runtime.config' 2>/dev/null \
  || die "Python with the repository's packages is needed: run make setup"

body="$("$PYTHON" -m harness.ops.cdc_setup render "$CONFIG")" || exit 1
CONNECT_URL="$("$PYTHON" -c 'from harness.runtime.config import endpoints; print(endpoints().connect_url)')"
CONNECT_URL="${CONNECT_URL%/}"

# Reads JSON on stdin, runs a Python expression on it as `j`, prints the result.
json() { "$PYTHON" -c "import json,sys; j=json.load(sys.stdin); r=$1; print(r if isinstance(r,str) else '\n'.join(map(str,r)))"; }
request() {  # METHOD PATH [BODY] -> prints the body, then the HTTP status on the last line
  local args=(-sS -X "$1" -H "Content-Type: application/json" -w '\n%{http_code}')
  [[ $# -ge 3 ]] && args+=(--data "$3")
  curl "${args[@]}" "$CONNECT_URL$2" || die "Kafka Connect does not answer at $CONNECT_URL (make up; make status)"
}

name="$(printf '%s' "$body" | json 'j["name"]')"
pg="$(printf '%s' "$body" | json 'j["database.hostname"] + ":" + j["database.port"]')"
echo "Kafka Connect: $CONNECT_URL — connector $name, PostgreSQL as Connect sees it: $pg"

# 0. The captured tables: Debezium's publication and snapshot need them to exist.
echo "tables captured:"
"$PYTHON" -m harness.ops.cdc_setup tables "$CONFIG" || exit 1

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
