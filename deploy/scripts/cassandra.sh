#!/usr/bin/env bash
# A single-node Apache Cassandra 5.0 for tests, run straight from the Maven Central jars
# (deploy/cassandra/pom.xml) on JDK 17: 127.0.0.1, CQL on ${CASSANDRA_PORT:-9042}, data in var/cassandra/.
#
# usage: deploy/scripts/cassandra.sh {install|start|stop|status}
#
# Environment:
#   SKYOPS_CACHE        jar cache root (default ~/.cache/skyops); jars go to cassandra-<version>/lib
#   CASSANDRA_HEAP      heap size for -Xms/-Xmx (default 2G: 1G ran out with many test keyspaces open)
#   CASSANDRA_PORT      CQL native port (default 9042)
#   CASSANDRA_STORAGE_PORT, CASSANDRA_JMX_PORT  (default 7000, 7199; JMX binds to localhost only)
#   CASSANDRA_JAVA      java binary to use (default: a JDK 17, else 11; Cassandra 5.0 runs on no other)
#   CASSANDRA_START_TIMEOUT  seconds to wait for the first CQL answer (default 240)
set -euo pipefail
export SERVICE_NAME=cassandra
# shellcheck source=lib.sh disable=SC1091
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

POM="$REPO_ROOT/deploy/cassandra/pom.xml"
# One source of truth for the version: the pom's <cassandra.version>.
CASSANDRA_VERSION="$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$POM" | head -1)"
[[ -n "$CASSANDRA_VERSION" ]] || die "cannot read <cassandra.version> from $POM"

CACHE_DIR="${SKYOPS_CACHE:-${HOME:-/root}/.cache/skyops}/cassandra-$CASSANDRA_VERSION"
LIB_DIR="$CACHE_DIR/lib"
MARKER="$CACHE_DIR/.installed"

CQL_PORT="${CASSANDRA_PORT:-9042}"
# var/cassandra for the default port; an overridden port gets its own node folder.
if [[ "$CQL_PORT" == "9042" ]]; then C_HOME="$VAR_DIR/cassandra"; else C_HOME="$VAR_DIR/cassandra-$CQL_PORT"; fi
CONF_DIR="$C_HOME/conf"
LOG_DIR="$C_HOME/logs"
STDOUT_LOG="$LOG_DIR/stdout.log"
PIDFILE="$C_HOME/cassandra.pid"

STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
JMX_PORT="${CASSANDRA_JMX_PORT:-7199}"
HEAP="${CASSANDRA_HEAP:-2G}"
START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-240}"

# ---------------------------------------------------------------------------------------------------
java_major() { "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -1; }

# Cassandra 5.0 supports JDK 11 and 17 only (this machine also has a Temurin 25: never pick that).
find_java() {
    local cand
    local candidates=()
    [[ -n "${CASSANDRA_JAVA:-}" ]] && candidates+=("$CASSANDRA_JAVA")
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
    for cand in /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/java-11-openjdk-*/bin/java; do
        candidates+=("$cand")
    done
    command -v java >/dev/null && candidates+=("$(command -v java)")
    for cand in "${candidates[@]}"; do
        [[ -x "$cand" ]] || continue
        case "$(java_major "$cand")" in
        17 | 11)
            echo "$cand"
            return 0
            ;;
        esac
    done
    return 1
}

ensure_python_for_wait() {
    # The venv's python has cassandra-driver (pyproject dependency); fall back to a port+log check.
    local py="$REPO_ROOT/.venv/bin/python"
    if [[ -x "$py" ]] && "$py" -c 'import cassandra.cluster' >/dev/null 2>&1; then
        echo "$py"
    fi
}

cql_ready_once() {
    local py
    py="$(ensure_python_for_wait)"
    if [[ -n "$py" ]]; then
        "$py" "$LIB_DIR_SCRIPTS/wait_cql.py" --port "$CQL_PORT" --timeout 0 >/dev/null 2>&1
    else
        port_in_use "$CQL_PORT" && grep -q 'Startup complete' "$STDOUT_LOG" 2>/dev/null
    fi
}
LIB_DIR_SCRIPTS="$REPO_ROOT/deploy/scripts"

# ---------------------------------------------------------------------------------------------------
do_install() {
    if ! find_java >/dev/null; then
        apt_install openjdk-17-jre-headless
    fi
    find_java >/dev/null || die "no JDK 17 or 11 found (Cassandra 5.0 runs on no other)"
    if [[ -f "$MARKER" ]] && compgen -G "$LIB_DIR/cassandra-all-$CASSANDRA_VERSION.jar" >/dev/null &&
        compgen -G "$LIB_DIR/jamm-*.jar" >/dev/null; then
        log "Cassandra $CASSANDRA_VERSION jars already in $LIB_DIR"
        return 0
    fi
    command -v mvn >/dev/null || apt_install maven
    log "fetching Cassandra $CASSANDRA_VERSION jars from Maven Central into $LIB_DIR"
    local tmp="$CACHE_DIR/lib.partial"
    rm -rf "$tmp" "$MARKER"
    mkdir -p "$CACHE_DIR"
    local mvn_log="$CACHE_DIR/mvn.log"
    if ! mvn -B -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        tail_log "$mvn_log"
        die "mvn dependency:copy-dependencies failed"
    fi
    compgen -G "$tmp/cassandra-all-$CASSANDRA_VERSION.jar" >/dev/null ||
        die "cassandra-all-$CASSANDRA_VERSION.jar missing after mvn (see $mvn_log)"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
    date -u +%FT%TZ >"$MARKER"
    log "installed $(find "$LIB_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1))"
}

write_conf() {
    mkdir -p "$CONF_DIR" "$LOG_DIR" "$C_HOME/data" "$C_HOME/commitlog" "$C_HOME/saved_caches" \
        "$C_HOME/hints" "$C_HOME/cdc_raw" "$C_HOME/triggers"
    cat >"$CONF_DIR/cassandra.yaml" <<EOF
# Written by deploy/scripts/cassandra.sh on every start: a small single-node test cluster.
cluster_name: skyops-test
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: org.apache.cassandra.locator.SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $STORAGE_PORT
native_transport_port: $CQL_PORT
start_native_transport: true

data_file_directories:
  - $C_HOME/data
commitlog_directory: $C_HOME/commitlog
saved_caches_directory: $C_HOME/saved_caches
hints_directory: $C_HOME/hints
cdc_enabled: false
cdc_raw_directory: $C_HOME/cdc_raw

commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 16MiB

authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager

# A fresh node with nothing to upgrade from: use 5.0's own storage format and features.
storage_compatibility_mode: NONE

# Single node on 2 cores: one compactor, no snapshot on DROP/TRUNCATE; enough write threads and
# memtable space that the archive's packed-block writes are not throttled by flushes.
auto_snapshot: false
concurrent_compactors: 1
concurrent_reads: 16
concurrent_writes: 32
concurrent_counter_writes: 4
memtable_heap_space: 192MiB
memtable_offheap_space: 192MiB
# The archive sends single-partition batches (a point-day's aggregate rows); never multi-partition ones.
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 640KiB

# Generous timeouts: a loaded 2-core CI machine must not turn slow into failed.
read_request_timeout: 10000ms
range_request_timeout: 20000ms
write_request_timeout: 10000ms
counter_write_request_timeout: 10000ms
truncate_request_timeout: 60000ms
request_timeout: 20000ms
EOF
    cat >"$CONF_DIR/logback.xml" <<'EOF'
<!-- Written by deploy/scripts/cassandra.sh: INFO to the console (stdout.log via nohup). -->
<configuration scan="false">
  <shutdownHook class="ch.qos.logback.core.hook.DefaultShutdownHook"/>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="STDOUT"/>
  </root>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
  <logger name="io.netty" level="WARN"/>
</configuration>
EOF
}

jvm_args() {
    local jamm
    jamm="$(compgen -G "$LIB_DIR/jamm-*.jar" | head -1)"
    [[ -n "$jamm" ]] || die "jamm jar missing in $LIB_DIR: run '$0 install'"
    JVM_ARGS=(
        "-Xms$HEAP" "-Xmx$HEAP" -Xss256k
        -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
        -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300
        -XX:InitiatingHeapOccupancyPercent=70
        -XX:+ExitOnOutOfMemoryError -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem
        -XX:+UseTLAB -XX:+ResizeTLAB
        -ea -da:net.openhft...
        -Djava.net.preferIPv4Stack=true
        -Djdk.attach.allowAttachSelf=true
        # JPMS (conf/jvm17-server.options)
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
        --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        --add-opens java.base/java.nio=ALL-UNNAMED
        # Netty
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true
        -Dio.netty.allocator.maxOrder=11
        "-javaagent:$jamm"
        # Cassandra
        "-Dcassandra.config=file://$CONF_DIR/cassandra.yaml"
        "-Dcassandra.storagedir=$C_HOME"
        "-Dcassandra.logdir=$LOG_DIR"
        "-Dcassandra.triggers_dir=$C_HOME/triggers"
        "-Dlogback.configurationFile=file://$CONF_DIR/logback.xml"
        -Dcassandra-foreground=yes
        -Dcassandra.skip_wait_for_gossip_to_settle=0
        -Dcassandra.ring_delay_ms=1000
    )
    if [[ -n "$JMX_PORT" && "$JMX_PORT" != "0" ]]; then
        JVM_ARGS+=("-Dcassandra.jmx.local.port=$JMX_PORT" -Djava.rmi.server.hostname=127.0.0.1)
    fi
}

do_start() {
    if pid_alive "$PIDFILE"; then
        if cql_ready_once; then
            log "already running (pid $(cat "$PIDFILE")), CQL on 127.0.0.1:$CQL_PORT"
            return 0
        fi
        log "pid $(cat "$PIDFILE") alive but CQL not answering yet: waiting for it"
    else
        [[ -f "$MARKER" ]] || die "Cassandra jars not installed: run '$0 install'"
        local java port
        java="$(find_java)" || die "no JDK 17 or 11 found: run '$0 install'"
        for port in "$CQL_PORT" "$STORAGE_PORT" ${JMX_PORT:+"$JMX_PORT"}; do
            [[ "$port" == "0" ]] && continue
            port_in_use "$port" && die "port $port on 127.0.0.1 is already in use by another program"
        done
        rm -f "$PIDFILE"
        write_conf
        jvm_args
        [[ -f "$STDOUT_LOG" ]] && mv -f "$STDOUT_LOG" "$STDOUT_LOG.1"
        log "starting Cassandra $CASSANDRA_VERSION ($java, heap $HEAP), CQL on 127.0.0.1:$CQL_PORT"
        (
            cd "$C_HOME"
            nohup "$java" "${JVM_ARGS[@]}" -cp "$CONF_DIR:$LIB_DIR/*" \
                org.apache.cassandra.service.CassandraDaemon >"$STDOUT_LOG" 2>&1 </dev/null &
            echo $! >"$PIDFILE"
        )
    fi
    local py rc=0 t0=$SECONDS
    py="$(ensure_python_for_wait)"
    if [[ -n "$py" ]]; then
        "$py" "$LIB_DIR_SCRIPTS/wait_cql.py" --port "$CQL_PORT" --timeout "$START_TIMEOUT" \
            --pidfile "$PIDFILE" >&2 || rc=$?
    else
        log "no $REPO_ROOT/.venv with cassandra-driver: waiting for the port and 'Startup complete' instead"
        wait_until "$START_TIMEOUT" "cassandra CQL port" cql_ready_once || rc=1
    fi
    if ((rc != 0)); then
        tail_log "$STDOUT_LOG"
        if pid_alive "$PIDFILE"; then
            die "Cassandra did not answer CQL within ${START_TIMEOUT} s (still running as pid $(cat "$PIDFILE"))"
        fi
        die "Cassandra exited during startup"
    fi
    log "CQL answering after $((SECONDS - t0)) s (pid $(cat "$PIDFILE"))"
}

do_stop() {
    if ! pid_alive "$PIDFILE"; then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    # SIGTERM runs Cassandra's shutdown hook (drain: flush memtables, stop transports).
    stop_pidfile "$PIDFILE" "${CASSANDRA_STOP_TIMEOUT:-60}"
    log "stopped"
}

do_status() {
    if pid_alive "$PIDFILE" && cql_ready_once; then
        local rss
        rss="$(awk '/VmRSS/ {print $2 " " $3}' "/proc/$(cat "$PIDFILE")/status" 2>/dev/null || true)"
        echo "cassandra: running $CASSANDRA_VERSION on 127.0.0.1:$CQL_PORT (pid $(cat "$PIDFILE"), RSS $rss)"
    elif pid_alive "$PIDFILE"; then
        echo "cassandra: process $(cat "$PIDFILE") alive but CQL not answering on port $CQL_PORT"
        return 1
    else
        echo "cassandra: stopped"
        return 3
    fi
}

run_action "$@"
