"""The telescope as the VES executor sees it: an OPC-UA client of the NTT's address space (reads and methods)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asyncua import ua as _ua
from asyncua.client.client import Client

from ves_sync.domain.execution import TelescopeStatus

log = logging.getLogger(__name__)

# asyncua's hints use NewTypes (Int64, Double…) that refuse plain Python values.
ua: Any = _ua

# The address space the telescope serves (the simulator in collectors/ serves the same one).
NAMESPACE = "urn:skyops:ntt"
STATUS_NODES = ("TCS.State", "Dome.Shutter", "Exposure.State", "Exposure.ObId", "Exposure.Remaining",
                "TCS.Altitude", "TCS.Azimuth")


class TelescopeUnavailableError(ConnectionError):
    """The telescope's OPC-UA server could not be reached or the session broke."""


class TelescopeRefusedError(Exception):
    """The telescope refused a command (e.g. a target below its altitude limit, an exposure already running)."""


class TelescopeClient:
    """One OPC-UA session to the telescope, opened on first use and opened again after a failure."""

    def __init__(self, endpoint: str, *, timeout_s: float = 5.0) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._client: Client | None = None
        self._ns = 0

    async def _session(self) -> Client:
        if self._client is not None:
            return self._client
        client = Client(self.endpoint, timeout=self.timeout_s)
        try:
            await client.connect()
            self._ns = await client.get_namespace_index(NAMESPACE)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.disconnect()
            raise TelescopeUnavailableError(f"telescope at {self.endpoint} is unreachable: {exc!r}") from exc
        self._client = client
        return client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=self.timeout_s)

    async def _drop(self, exc: BaseException) -> TelescopeUnavailableError:
        await self.close()
        return TelescopeUnavailableError(f"telescope session to {self.endpoint} failed: {exc!r}")

    def _node(self, client: Client, key: str) -> Any:
        return client.get_node(f"ns={self._ns};s=NTT.{key}")

    async def status(self) -> TelescopeStatus:
        """Mount, shutter and exposure as the telescope publishes them now."""
        client = await self._session()
        try:
            values = await client.read_values([self._node(client, key) for key in STATUS_NODES])
        except Exception as exc:
            raise await self._drop(exc) from exc
        mount, shutter, state, ob_id, remaining, alt, az = values
        return TelescopeStatus(mount=str(mount), shutter=str(shutter), exposure_state=str(state),
                               exposure_ob_id=int(ob_id or 0), exposure_remaining_s=float(remaining or 0.0),
                               altitude=float(alt or 0.0), azimuth=float(az or 0.0))

    async def _call(self, obj: str, method: str, *args: Any) -> None:
        client = await self._session()
        try:
            await self._node(client, obj).call_method(f"{self._ns}:{method}", *args)
        except ua.UaStatusCodeError as exc:
            raise TelescopeRefusedError(f"telescope refused {obj}.{method}: {exc}") from exc
        except Exception as exc:
            raise await self._drop(exc) from exc

    async def slew_to(self, altitude: float, azimuth: float) -> None:
        await self._call("TCS", "SlewTo", ua.Variant(float(altitude), ua.VariantType.Double),
                         ua.Variant(float(azimuth), ua.VariantType.Double))

    async def start_exposure(self, ob_id: int, seconds: float) -> None:
        await self._call("Exposure", "Start", ua.Variant(int(ob_id), ua.VariantType.Int64),
                         ua.Variant(float(seconds), ua.VariantType.Double))

    async def abort_exposure(self) -> None:
        await self._call("Exposure", "Abort")

    async def open_dome(self) -> None:
        await self._call("Dome", "Open")
