"""The planner's nightly jobs on apscheduler: the afternoon plan, autoCleanOBs, the morning report."""

from __future__ import annotations

import asyncio
import logging
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from planner.config import SiteConfig
from planner.service import PlannerService

log = logging.getLogger(__name__)

AFTERNOON_PLAN = "afternoon-plan"
AUTO_CLEAN = "auto-clean-obs"
MORNING_REPORT = "morning-report"


def build_jobs(
    service: PlannerService,
    site: SiteConfig,
    *,
    afternoon_hour: int = 16,
    clean_hour: int = 12,
    report_hour: int = 9,
) -> AsyncIOScheduler:
    """An (unstarted) scheduler with the three jobs at local site time; `deploy` starts and stops it."""
    zone = ZoneInfo(site.timezone)
    scheduler = AsyncIOScheduler(timezone=zone)
    scheduler.add_job(
        service.afternoon_plan,
        CronTrigger(hour=afternoon_hour, minute=0, timezone=zone),
        id=AFTERNOON_PLAN,
        coalesce=True,
        misfire_grace_time=3600,
    )
    scheduler.add_job(
        service.auto_clean,
        CronTrigger(hour=clean_hour, minute=0, timezone=zone),
        id=AUTO_CLEAN,
        coalesce=True,
        misfire_grace_time=3600,
    )
    scheduler.add_job(
        _log_morning_report,
        CronTrigger(hour=report_hour, minute=0, timezone=zone),
        args=[service],
        id=MORNING_REPORT,
        coalesce=True,
        misfire_grace_time=3600,
    )
    return scheduler


async def _log_morning_report(service: PlannerService) -> None:
    summary = service.morning_report()
    if summary is None:
        log.info("morning report: last night was not planned")
    else:
        log.info("morning report %s, as planned: %s", summary.night, summary.as_dict())
    # What was executed (recorded in P2 or seen on the telescope), which is what management reads.
    executed = await asyncio.to_thread(service.executed_report)
    if executed is not None:
        log.info("morning report %s, as executed: %s", executed.start.date().isoformat(), executed.as_dict())
