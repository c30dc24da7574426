"""A local stand-in for ESO's P2 service: the REST subset p2api calls, with ETags, delegation and the VES."""

from ves_sync.emulator.app import API_PREFIX, LOGIN_PATH, create_app
from ves_sync.emulator.seed import INSTRUMENT, Seed, default_seed
from ves_sync.emulator.server import EmulatorServer, SnapshotFile, SnapshotWriter, open_state, serve
from ves_sync.emulator.state import P2ApiError, P2State

__all__ = [
    "API_PREFIX",
    "INSTRUMENT",
    "LOGIN_PATH",
    "EmulatorServer",
    "P2ApiError",
    "P2State",
    "Seed",
    "SnapshotFile",
    "SnapshotWriter",
    "create_app",
    "default_seed",
    "open_state",
    "serve",
]
