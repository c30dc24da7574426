"""Prometheus metrics of the platform, on a registry per app (never the global one, so apps stay independent)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    """The HMI's own metrics; services add gauges through `gauge_from` as deploy wires them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.logins = Counter("skyops_hmi_logins", "Login attempts", ["result"], registry=self.registry)
        self.graphql_errors = Counter("skyops_hmi_graphql_errors", "GraphQL operations that returned errors",
                                      registry=self.registry)

    def gauge_from(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read when Prometheus scrapes (e.g. a stream's lag)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)
