"""Fault suite: the distributed platform under kills and server outages."""
