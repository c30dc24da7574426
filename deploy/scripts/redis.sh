#!/usr/bin/env bash
# Our own Redis instance (not the Debian system service): 127.0.0.1:${REDIS_PORT:-6379},
# append-only file on (fsync every second), data in var/redis/, daemonized with a pidfile.
#
# usage: deploy/scripts/redis.sh {install|start|stop|status}
set -euo pipefail
export SERVICE_NAME=redis
# shellcheck source=lib.sh disable=SC1091
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

REDIS_PORT="${REDIS_PORT:-6379}"
# var/redis for the default port; an overridden port gets its own folder (never two servers on one AOF).
if [[ "$REDIS_PORT" == "6379" ]]; then REDIS_DIR="$VAR_DIR/redis"; else REDIS_DIR="$VAR_DIR/redis-$REDIS_PORT"; fi
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"
START_TIMEOUT="${REDIS_START_TIMEOUT:-30}"

ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

do_install() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        log "redis-server already installed ($(redis-server --version | awk '{print $3}'))"
    else
        apt_install redis-server redis-tools
    fi
    # On a machine with a working init, the package may have started the system service on 6379;
    # we run our own instance, so make sure the system one is not holding the port.
    if pid_alive /run/redis/redis-server.pid; then
        log "stopping the Debian system redis-server service (we run our own instance)"
        service redis-server stop >/dev/null 2>&1 || stop_pidfile /run/redis/redis-server.pid 10
    fi
}

write_conf() {
    mkdir -p "$REDIS_DIR"
    cat >"$REDIS_CONF" <<EOF
# Written by deploy/scripts/redis.sh; edits are overwritten on start.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
supervised no
pidfile $REDIS_PID
logfile $REDIS_LOG
loglevel notice
dir $REDIS_DIR
appendonly yes
appendfilename "appendonly.aof"
appenddirname "appendonlydir"
appendfsync everysec
# AOF is the persistence; no periodic RDB snapshots.
save ""
databases 16
EOF
}

do_start() {
    command -v redis-server >/dev/null || die "redis-server is not installed: run '$0 install'"
    if pid_alive "$REDIS_PID" && ping; then
        log "already running on 127.0.0.1:$REDIS_PORT (pid $(cat "$REDIS_PID"))"
        return 0
    fi
    if port_in_use "$REDIS_PORT"; then
        if ping; then
            die "port $REDIS_PORT answers PING but is not our instance (pidfile $REDIS_PID); stop the other Redis first"
        fi
        die "port $REDIS_PORT is in use by another program"
    fi
    rm -f "$REDIS_PID"
    write_conf
    log "starting redis-server on 127.0.0.1:$REDIS_PORT (data $REDIS_DIR)"
    if ! redis-server "$REDIS_CONF"; then
        tail_log "$REDIS_LOG"
        die "redis-server failed to start"
    fi
    if ! wait_until "$START_TIMEOUT" "redis PING" ping; then
        tail_log "$REDIS_LOG"
        die "redis did not answer PING within ${START_TIMEOUT} s"
    fi
}

do_stop() {
    if ! pid_alive "$REDIS_PID"; then
        log "not running"
        rm -f "$REDIS_PID"
        return 0
    fi
    # SIGTERM makes Redis fsync the AOF and exit cleanly.
    stop_pidfile "$REDIS_PID" 30
    log "stopped"
}

do_status() {
    if pid_alive "$REDIS_PID" && ping; then
        echo "redis: running on 127.0.0.1:$REDIS_PORT (pid $(cat "$REDIS_PID"))"
    elif pid_alive "$REDIS_PID"; then
        echo "redis: process $(cat "$REDIS_PID") alive but not answering PING on port $REDIS_PORT"
        return 1
    else
        echo "redis: stopped"
        return 3
    fi
}

run_action "$@"
