"""Wait until a Cassandra node answers CQL; used by deploy/scripts/cassandra.sh.

usage: python wait_cql.py [--host H] [--port P] [--timeout S] [--pidfile F]

Retries `SELECT release_version FROM system.local` until it answers (exit 0, prints the version),
the timeout passes (exit 1) or the process named in --pidfile dies (exit 2, so a crashed JVM fails
fast instead of waiting out the timeout). With --timeout 0 it tries exactly once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time


def _alive(pidfile: str | None) -> bool:
    if not pidfile:
        return True
    try:
        with open(pidfile, encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _try_once(host: str, port: int) -> str | None:
    from cassandra.cluster import Cluster

    cluster = Cluster([host], port=port, connect_timeout=3, control_connection_timeout=3)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local", timeout=5).one()
        return str(row[0]) if row is not None else None
    except Exception:
        return None
    finally:
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9042)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--pidfile", default=None)
    args = parser.parse_args(argv)

    # The driver logs every refused connection as a warning: keep the wait loop quiet.
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)

    start = time.monotonic()
    while True:
        version = _try_once(args.host, args.port)
        if version is not None:
            print(f"release_version={version} after {time.monotonic() - start:.1f} s")
            return 0
        if not _alive(args.pidfile):
            print(f"process in {args.pidfile} is gone", file=sys.stderr)
            return 2
        if time.monotonic() - start >= args.timeout:
            print(f"no CQL answer from {args.host}:{args.port} within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
