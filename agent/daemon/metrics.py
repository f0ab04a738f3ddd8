"""Prometheus metrics of the agent (served with --metrics ADDR:PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS = Counter("avio_events_seen", "Events the agent received", ["source"])
FORWARDED = Counter("avio_resizes_forwarded", "Host resizes forwarded to a guest disk")
REFUSED = Counter("avio_resizes_refused", "Host shrinks not forwarded (they would destroy data)")
FAILED = Counter("avio_actions_failed", "Actions that failed", ["action"])
HOTPLUGS = Counter("avio_hotplugs", "Disks plugged or unplugged by the agent", ["action"])
LATENCY = Histogram(
    "avio_forward_latency_seconds",
    "Host uevent received -> blockResize returned",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GUESTS = Gauge("avio_guests_tracked", "Running guests the agent tracks")
SOURCE_ERRORS = Counter(
    "avio_source_errors", "Event source failures (re-opened; events may be lost)", ["source"]
)
DROPPED = Counter("avio_events_dropped", "Events or actions dropped: a queue was full")
CONFIGS_REFUSED = Counter("avio_configs_refused", "Config files refused (unsafe or bad)")
RECONCILES = Counter("avio_reconciles", "Full reconciliations", ["reason"])
LIBVIRT_CALLS = Counter("avio_libvirt_calls", "libvirt calls that change or query guests", ["call"])


def serve(address: str) -> None:
    """Start the metrics HTTP server on `host:port`."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1")
