"""Alarm rules, state machine, supervisor and dispatcher."""
