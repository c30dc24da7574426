#!/usr/bin/env bash
# All real servers the tests and `skyops up` need: Redis, PostgreSQL, Cassandra (loopback only).
#
# usage: deploy/scripts/services.sh {up|down|status|env}
#   up      install (skips work already done) and start each; idempotent, fast when already up
#   down    stop each
#   status  one line per server; exit non-zero if any is not running
#   env     print the export lines the tests read (eval "$(deploy/scripts/services.sh env)")
set -euo pipefail
export SERVICE_NAME=services
# shellcheck source=lib.sh disable=SC1091
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

SCRIPTS="$REPO_ROOT/deploy/scripts"
SERVICES=(redis postgres cassandra)

do_up() {
    local s t0 t
    t0=$SECONDS
    for s in "${SERVICES[@]}"; do
        t=$SECONDS
        bash "$SCRIPTS/$s.sh" install
        bash "$SCRIPTS/$s.sh" start
        log "$s up ($((SECONDS - t)) s)"
    done
    log "all up in $((SECONDS - t0)) s"
}

do_down() {
    local s rc=0
    # Reverse order; keep going if one fails, report at the end.
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        s="${SERVICES[$i]}"
        bash "$SCRIPTS/$s.sh" stop || rc=1
    done
    return "$rc"
}

do_status() {
    local s rc=0
    for s in "${SERVICES[@]}"; do
        bash "$SCRIPTS/$s.sh" status || rc=1
    done
    return "$rc"
}

do_env() {
    local redis_port="${REDIS_PORT:-6379}" pg_port="${PG_PORT:-5432}"
    echo "export SKYOPS_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
    echo "export SKYOPS_TEST_CASSANDRA_HOSTS=127.0.0.1"
    if [[ -n "${CASSANDRA_PORT:-}" && "$CASSANDRA_PORT" != "9042" ]]; then
        echo "export SKYOPS_TEST_CASSANDRA_PORT=$CASSANDRA_PORT"
    fi
    echo "export SKYOPS_TEST_SQL_URL=postgresql+psycopg://skyops:skyops@127.0.0.1:$pg_port/skyops_test"
}

case "${1:-}" in
up) do_up ;;
down) do_down ;;
status) do_status ;;
env) do_env ;;
*)
    echo "usage: $0 {up|down|status|env}" >&2
    exit 2
    ;;
esac
