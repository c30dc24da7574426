"""Shared kernel: record types, settings, the bus and the archive port with its adapters."""
