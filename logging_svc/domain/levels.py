"""Level names and syslog severities mapped onto the `logging` levels the archive stores."""

from __future__ import annotations

import logging

from skyops.records import LOG_LEVELS

_NAMES = {v: k for k, v in LOG_LEVELS.items()}

# RFC 5424 severities 0..7 (emerg, alert, crit, err, warning, notice, info, debug).
SYSLOG_SEVERITY = (
    logging.CRITICAL, logging.CRITICAL, logging.CRITICAL, logging.ERROR,
    logging.WARNING, logging.INFO, logging.INFO, logging.DEBUG,
)
SYSLOG_SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def level_name(level: int) -> str | int:
    """The standard name of a level (`WARNING`), or the number itself for a custom level."""
    return _NAMES.get(level, level)
