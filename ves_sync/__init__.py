"""Keeping ESO P2's Visitor Execution Sequence in step with the plan; the P2 emulator."""
