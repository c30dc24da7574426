"""The planner's pure core: night arrays, observability, the scheduler, re-planning, execution, reports."""
