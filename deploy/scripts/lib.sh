# shellcheck shell=bash
# Shared helpers for the deploy/scripts/*.sh service scripts. Source it; do not run it.
#
# Provides:
#   REPO_ROOT, VAR_DIR          repo root (from this file's location) and its var/ folder
#   log / die                   messages on stderr
#   tail_log FILE [N]           print the last N (40) lines of a log, framed
#   wait_until SECS DESC CMD..  run CMD until it succeeds or SECS pass (returns 1 on timeout)
#   port_in_use PORT            true if something listens on 127.0.0.1:PORT
#   pid_alive PIDFILE           true if the pidfile names a live process
#   apt_install PKG..           apt-get install (update once first) only for packages missing

set -euo pipefail

LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LIB_DIR/../.." && pwd)"
VAR_DIR="$REPO_ROOT/var"
export REPO_ROOT VAR_DIR

log() { printf '[%s] %s\n' "${SERVICE_NAME:-deploy}" "$*" >&2; }

die() {
    printf '[%s] ERROR: %s\n' "${SERVICE_NAME:-deploy}" "$*" >&2
    exit 1
}

tail_log() {
    local file="$1" n="${2:-40}"
    if [[ -f "$file" ]]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$file" >&2
        tail -n "$n" "$file" >&2 || true
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        printf -- '----- (no log file at %s) -----\n' "$file" >&2
    fi
}

# wait_until TIMEOUT_SECONDS DESCRIPTION CMD [ARGS...]
wait_until() {
    local timeout="$1" desc="$2"
    shift 2
    local start=$SECONDS
    while true; do
        if "$@" >/dev/null 2>&1; then
            log "$desc: ready after $((SECONDS - start)) s"
            return 0
        fi
        if ((SECONDS - start >= timeout)); then
            log "$desc: not ready after ${timeout} s"
            return 1
        fi
        sleep 1
    done
}

port_in_use() {
    local port="$1"
    # bash's /dev/tcp: connect succeeds only if something listens.
    (exec 3<>"/dev/tcp/127.0.0.1/$port") >/dev/null 2>&1
}

pid_alive() {
    local pidfile="$1" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null
}

_APT_UPDATED=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    if ((_APT_UPDATED == 0)); then
        "${sudo[@]}" apt-get update -qq
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# stop_pidfile PIDFILE TIMEOUT_SECONDS: SIGTERM, wait up to TIMEOUT, then SIGKILL; removes the pidfile.
stop_pidfile() {
    local pidfile="$1" timeout="${2:-30}" pid
    if ! pid_alive "$pidfile"; then
        rm -f "$pidfile"
        return 0
    fi
    pid="$(cat "$pidfile")"
    log "stopping pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    local start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS - start >= timeout)); then
            log "pid $pid still alive after ${timeout} s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.5
    done
    rm -f "$pidfile"
}

# Every server script ends with `run_action "$@"`: it defines do_install, do_start, do_stop and do_status.
run_action() {
    case "${1:-}" in
    install | start | stop | status) "do_$1" ;;
    *)
        echo "usage: $0 {install|start|stop|status}" >&2
        exit 2
        ;;
    esac
}
