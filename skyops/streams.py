"""Names of the bus streams and pub/sub channels every service agrees on."""

from __future__ import annotations

from typing import Final

MON_SAMPLES: Final = "mon.samples"  # SampleBatch (codec.encode_samples), from collectors
LOG_RECORDS: Final = "log.records"  # LogRecord batches (codec.encode_logs), from every process
ALARM_EVENTS: Final = "alarm.events"  # AlarmEvent batches (codec.encode_alarm_events), from the supervisor
PLAN_TRIGGERS: Final = "plan.triggers"  # messages.PlanTrigger JSON: alarm consequences and ToO triggers
PLAN_EVENTS: Final = "plan.events"  # messages.PlanEvent JSON: every new or changed night plan
P2_OBS: Final = "p2.obs"  # messages.P2ObLinked / P2ObStatus JSON, from the VES sync: OBs in P2 and their statuses

LIVE_SAMPLES: Final = "live.samples"  # pub/sub: encoded SampleBatch for HMI fan-out
LIVE_LOGS: Final = "live.logs"  # pub/sub: encoded log batches for the live tail
LIVE_ALARMS: Final = "live.alarms"  # pub/sub: encoded alarm events for the HMI
