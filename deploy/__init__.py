"""Composition root: the skyops command line, service wiring and server install scripts."""
