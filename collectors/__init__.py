"""Data collectors, processing, the monitoring dispatcher and the simulators."""
