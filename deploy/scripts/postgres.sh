#!/usr/bin/env bash
# Our own PostgreSQL cluster (not Debian's system cluster): data in var/postgres/data, listening on
# 127.0.0.1:${PG_PORT:-5432}, run as the `postgres` OS user with Debian's binaries from
# /usr/lib/postgresql/<ver>/bin (never whatever pg_ctl happens to be first on PATH).
# Creates role skyops/skyops and databases skyops and skyops_test owned by it.
#
# usage: deploy/scripts/postgres.sh {install|start|stop|status}
set -euo pipefail
export SERVICE_NAME=postgres
# shellcheck source=lib.sh disable=SC1091
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PG_PORT="${PG_PORT:-5432}"
PG_OS_USER=postgres
# var/postgres for the default port; an overridden port gets its own cluster folder.
if [[ "$PG_PORT" == "5432" ]]; then PG_DIR="$VAR_DIR/postgres"; else PG_DIR="$VAR_DIR/postgres-$PG_PORT"; fi
PGDATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
START_TIMEOUT="${PG_START_TIMEOUT:-60}"
DB_ROLE=skyops
DB_PASSWORD=skyops
DATABASES=(skyops skyops_test)

# Unix socket for local admin (peer auth as the postgres OS user). Socket paths are limited to ~107
# bytes, so fall back to a short folder under /tmp when the repo lives at a long path.
PG_SOCKET_DIR="$PG_DIR/run"
if ((${#PG_SOCKET_DIR} > 80)); then
    PG_SOCKET_DIR="/tmp/skyops-pg-$PG_PORT"
fi

pg_bindir() {
    local ver="${PG_VERSION:-}"
    if [[ -z "$ver" ]]; then
        # Newest installed major version that has a server binary.
        ver="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null |
            awk -F/ '{print $5}' | sort -n | tail -1)"
    fi
    [[ -n "$ver" && -x "/usr/lib/postgresql/$ver/bin/postgres" ]] || return 1
    echo "/usr/lib/postgresql/$ver/bin"
}

as_pg() { runuser -u "$PG_OS_USER" -- "$@"; }

ready() {
    local bin
    bin="$(pg_bindir)" || return 1
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}

pid_alive_pg() {
    [[ -f "$PGDATA/postmaster.pid" ]] || return 1
    local pid
    pid="$(head -1 "$PGDATA/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

do_install() {
    if ! pg_bindir >/dev/null; then
        apt_install postgresql postgresql-contrib
    else
        log "PostgreSQL binaries present: $(pg_bindir)"
    fi
    pg_bindir >/dev/null || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin after install"
    id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user $PG_OS_USER missing (the postgresql package creates it)"
    # The package creates (and, with a working init, starts) Debian's own cluster on 5432. We run our
    # own cluster instead: stop the system one if it is up, and keep it from starting on boot.
    if command -v pg_lsclusters >/dev/null; then
        local ver name port status
        while read -r ver name port status _; do
            [[ "$ver" =~ ^[0-9]+$ ]] || continue
            if [[ "$status" == online* ]]; then
                log "stopping Debian's system cluster $ver/$name on port $port (we run our own)"
                pg_ctlcluster "$ver" "$name" stop || true
            fi
            if [[ -f "/etc/postgresql/$ver/$name/start.conf" ]] &&
                grep -qx 'auto' "/etc/postgresql/$ver/$name/start.conf"; then
                echo manual >"/etc/postgresql/$ver/$name/start.conf"
                log "set Debian's cluster $ver/$name to manual start"
            fi
        done < <(pg_lsclusters --no-header 2>/dev/null || true)
    fi
}

# The postgres OS user must be able to walk down to var/postgres. A clone under a private folder
# (mode 700) would block it: add only the traverse (x) bit where missing.
ensure_traversable() {
    local d="$PG_DIR"
    while [[ "$d" != "/" ]]; do
        d="$(dirname "$d")"
        if ! as_pg test -x "$d"; then
            log "granting o+x on $d so the $PG_OS_USER user can reach $PG_DIR"
            chmod o+x "$d"
        fi
    done
}

init_cluster() {
    local bin="$1"
    mkdir -p "$PG_DIR"
    ensure_traversable
    chown "$PG_OS_USER:" "$PG_DIR"
    if [[ -f "$PGDATA/PG_VERSION" ]]; then
        return 0
    fi
    log "initdb $PGDATA"
    rm -rf "$PGDATA"
    if ! as_pg "$bin/initdb" -D "$PGDATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1; then
        tail_log "$PG_DIR/initdb.log"
        die "initdb failed"
    fi
    echo "include_if_exists = 'skyops.conf'" >>"$PGDATA/postgresql.conf"
}

write_conf() {
    mkdir -p "$PG_SOCKET_DIR"
    chown "$PG_OS_USER:" "$PG_SOCKET_DIR"
    cat >"$PGDATA/skyops.conf" <<EOF
# Written by deploy/scripts/postgres.sh on every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 100
logging_collector = off
EOF
    chown "$PG_OS_USER:" "$PGDATA/skyops.conf"
}

psql_admin() {
    local bin
    bin="$(pg_bindir)"
    as_pg "$bin/psql" -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"
}

ensure_role_and_dbs() {
    psql_admin -d postgres <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_ROLE') THEN
    CREATE ROLE $DB_ROLE LOGIN PASSWORD '$DB_PASSWORD';
  ELSE
    ALTER ROLE $DB_ROLE LOGIN PASSWORD '$DB_PASSWORD';
  END IF;
END
\$\$;
SQL
    local db
    for db in "${DATABASES[@]}"; do
        if [[ "$(psql_admin -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]]; then
            log "creating database $db owned by $DB_ROLE"
            psql_admin -d postgres -c "CREATE DATABASE $db OWNER $DB_ROLE"
        fi
    done
}

do_start() {
    local bin
    bin="$(pg_bindir)" || die "PostgreSQL is not installed: run '$0 install'"
    if pid_alive_pg && ready; then
        log "already running on 127.0.0.1:$PG_PORT"
        ensure_role_and_dbs
        return 0
    fi
    if port_in_use "$PG_PORT"; then
        die "port $PG_PORT is in use by another program (Debian's system cluster? run '$0 install' to stop it)"
    fi
    init_cluster "$bin"
    write_conf
    log "starting $bin/postgres on 127.0.0.1:$PG_PORT (data $PGDATA)"
    touch "$PG_LOG"
    chown "$PG_OS_USER:" "$PG_LOG"
    if ! as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" start >/dev/null; then
        tail_log "$PG_LOG"
        die "pg_ctl start failed"
    fi
    if ! wait_until "$START_TIMEOUT" "pg_isready" ready; then
        tail_log "$PG_LOG"
        die "PostgreSQL did not become ready within ${START_TIMEOUT} s"
    fi
    ensure_role_and_dbs
}

do_stop() {
    local bin
    if ! pid_alive_pg; then
        log "not running"
        return 0
    fi
    bin="$(pg_bindir)"
    if ! as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null; then
        tail_log "$PG_LOG"
        die "pg_ctl stop failed"
    fi
    log "stopped"
}

do_status() {
    if pid_alive_pg && ready; then
        echo "postgres: running on 127.0.0.1:$PG_PORT (pid $(head -1 "$PGDATA/postmaster.pid"), $(pg_bindir))"
    elif pid_alive_pg; then
        echo "postgres: process alive but pg_isready fails on port $PG_PORT"
        return 1
    else
        echo "postgres: stopped"
        return 3
    fi
}

run_action "$@"
