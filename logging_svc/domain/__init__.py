"""The logging service's pure core: record formats, intake parsing and priority filters (no I/O)."""
