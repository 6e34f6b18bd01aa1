"""The serving locker's figures in Prometheus' text format, over HTTP (``prometheus_client``, an extra).

``start_metrics(locker, port)`` serves, on loopback unless told otherwise, what
``locker.server_status()`` says at each scrape: totals as counters, the current
clients, holds and waiters as gauges, wait and hold times as histograms, and the
busiest names' acquires and waiters with a ``name`` label.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from .errors import PylockerError
from .stats import BUCKETS, FIRST_BUCKET

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

try:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    HAVE_PROMETHEUS = True
except ImportError:  # the extra is not installed: start_metrics says so
    HAVE_PROMETHEUS = False

_BOUNDS = [str(math.ldexp(FIRST_BUCKET, i)) for i in range(BUCKETS)] + ["+Inf"]


def _histogram(name: str, documentation: str, summary: dict[str, Any]) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound, count in zip(_BOUNDS, summary["buckets"]):
        cumulative += count
        buckets.append((bound, float(cumulative)))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=summary["sum"])


class _StatusCollector:
    """Turns one ``server_status()`` into metric families, at each scrape."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        try:
            status = self._status()
        except PylockerError:  # not started, or the serving locker is out of reach: say so
            yield GaugeMetricFamily("pylocker_up", "1 when the serving locker answered", value=0.0)
            return
        yield GaugeMetricFamily("pylocker_up", "1 when the serving locker answered", value=1.0)
        server, stats = status["server"], status["stats"]
        for key, documentation in (("grants", "locks granted"), ("timeouts", "requests not granted in time"),
                                   ("expiries", "locks taken away (maxLockTime, lease)"),
                                   ("releases", "locks released"), ("publications", "messages published")):
            yield CounterMetricFamily(f"pylocker_{key}", documentation, value=stats[key])
        for key, documentation in (("clients", "connected lockers"), ("held", "locks held"),
                                   ("waiting", "requests waiting"), ("epoch", "the serving locker's epoch"),
                                   ("uptime", "seconds since it started serving")):
            yield GaugeMetricFamily(f"pylocker_{key}", documentation, value=server[key])
        yield GaugeMetricFamily("pylocker_recovering", "1 while recovering from a failover",
                                value=1.0 if server["recovering"] else 0.0)
        yield _histogram("pylocker_wait_seconds", "time from request to grant", stats["wait"])
        yield _histogram("pylocker_hold_seconds", "time from grant to release", stats["hold"])
        acquires = CounterMetricFamily("pylocker_name_acquires", "grants per name (the busiest)", labels=["name"])
        for name, figures in stats["names"].items():
            acquires.add_metric([name], figures["acquires"])
        yield acquires
        waiters = GaugeMetricFamily("pylocker_name_waiters", "requests waiting per name", labels=["name"])
        for row in status["locks"]:
            if row["waiters"]:
                waiters.add_metric([row["name"] if row["kind"] == "lock" else f"{row['kind']}:{row['name']}"],
                                   len(row["waiters"]))
        yield waiters


class MetricsServer:
    """A running metrics endpoint; ``close()`` stops it."""

    def __init__(self, status: Callable[[], dict[str, Any]], port: int, host: str = "127.0.0.1") -> None:
        if not HAVE_PROMETHEUS:
            raise RuntimeError("metrics need prometheus_client: pip install 'pylocker[metrics]'")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_StatusCollector(status))
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = self._server.server_port
        self._closed = threading.Event()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)


def start_metrics(locker: Any, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``locker.server_status()`` as Prometheus metrics at ``http://host:port/metrics`` (0: any port)."""
    return MetricsServer(locker.server_status, port, host)
