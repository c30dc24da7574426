"""OB store, observability, the night scheduler, re-planning and reports."""
