"""The pure alarm domain: rule kinds, thresholds and delays, the latched state machine, the rule engine."""
