"""Log intake, priority filters, log consumer and log queries."""
