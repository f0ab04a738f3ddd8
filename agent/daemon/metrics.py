"""Prometheus metrics of the agent (served with --metrics ADDR:PORT).

A small implementation of the text exposition format (counters, gauges,
histograms, labels) and a loopback HTTP endpoint: prometheus_client and
http.server cost the agent 20 MB of RSS for what fits in a page.
"""

from __future__ import annotations

import math
import socketserver
import threading
from collections.abc import Iterator

_LOCK = threading.Lock()
_REGISTRY: list[_Metric] = []


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Child:
    """One labelled series of a metric."""

    def __init__(self, metric: _Metric, labels: tuple[str, ...]) -> None:
        self.metric = metric
        self.labels = labels
        self.value = 0.0
        self.buckets = [0] * len(metric.buckets)
        self.sum = 0.0
        self.count = 0

    def inc(self, amount: float = 1.0) -> None:
        with _LOCK:
            self.value += amount

    def set(self, value: float) -> None:
        with _LOCK:
            self.value = float(value)

    def observe(self, value: float) -> None:
        with _LOCK:
            self.sum += value
            self.count += 1
            for i, bound in enumerate(self.metric.buckets):
                if value <= bound:
                    self.buckets[i] += 1


class _Metric:
    kind = ""
    suffix = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str] | tuple[str, ...] = (),
        buckets: tuple[float, ...] = (),
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.buckets = (*buckets, math.inf) if buckets else ()
        self.children: dict[tuple[str, ...], _Child] = {}
        if not self.labelnames:
            self.children[()] = _Child(self, ())
        _REGISTRY.append(self)

    def labels(self, *values: str) -> _Child:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        key = tuple(str(v) for v in values)
        with _LOCK:
            child = self.children.get(key)
            if child is None:
                child = self.children[key] = _Child(self, key)
        return child

    def inc(self, amount: float = 1.0) -> None:
        self.children[()].inc(amount)

    def set(self, value: float) -> None:
        self.children[()].set(value)

    def observe(self, value: float) -> None:
        self.children[()].observe(value)

    def _labels(self, child: _Child, extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = [*zip(self.labelnames, child.labels, strict=True), *extra]
        if not pairs:
            return ""
        return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name}{self.suffix} {self.documentation}"
        yield f"# TYPE {self.name}{self.suffix} {self.kind}"
        for child in list(self.children.values()):
            yield from self._series(child)

    def _series(self, child: _Child) -> Iterator[str]:
        yield f"{self.name}{self.suffix}{self._labels(child)} {_number(child.value)}"


class Counter(_Metric):
    """A count that only goes up; exposed as NAME_total."""

    kind = "counter"
    suffix = "_total"


class Gauge(_Metric):
    kind = "gauge"


class Histogram(_Metric):
    """Observations in cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, documentation, (), buckets)

    def _series(self, child: _Child) -> Iterator[str]:
        for bound, count in zip(self.buckets, child.buckets, strict=True):
            labels = self._labels(child, (("le", _number(bound)),))
            yield f"{self.name}_bucket{labels} {_number(count)}"
        yield f"{self.name}_sum{self._labels(child)} {_number(child.sum)}"
        yield f"{self.name}_count{self._labels(child)} {_number(child.count)}"


def exposition() -> str:
    """Every metric in Prometheus's text format (version 0.0.4)."""
    return "".join(line + "\n" for metric in list(_REGISTRY) for line in metric.lines())


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
HOOK_ANSWERS = Counter(
    "avio_hook_answers", "libvirt hook calls the agent answered", ["operation", "answer"]
)
SOURCE_ERRORS = Counter(
    "avio_source_errors", "Event source failures (re-opened; events may be lost)", ["source"]
)
DROPPED = Counter("avio_events_dropped", "Events or actions dropped: a queue was full")
CONFIGS_REFUSED = Counter("avio_configs_refused", "Config files refused (unsafe or bad)")
RECONCILES = Counter("avio_reconciles", "Full reconciliations", ["reason"])
LIBVIRT_CALLS = Counter("avio_libvirt_calls", "libvirt calls that change or query guests", ["call"])


class _Handler(socketserver.StreamRequestHandler):
    """GET /metrics (or /): the exposition; anything else: 404. HTTP/1.0, then close."""

    timeout = 5

    def handle(self) -> None:
        try:
            request = self.rfile.readline(8192).decode("latin-1").split()
            while self.rfile.readline(8192).strip():  # headers, ignored
                pass
        except (OSError, ValueError):
            return
        if len(request) >= 2 and request[0] in ("GET", "HEAD") and request[1] in ("/", "/metrics"):
            body = exposition().encode()
            status = "200 OK"
            kind = "text/plain; version=0.0.4; charset=utf-8"
        else:
            body, status, kind = b"not found\n", "404 Not Found", "text/plain"
        head = f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n"
        try:
            self.wfile.write(head.encode() + (b"" if request[:1] == ["HEAD"] else body))
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(address: str) -> None:
    """Start the metrics HTTP server on `host:port` in a background thread."""
    host, _, port = address.rpartition(":")
    server = _Server((host or "127.0.0.1", int(port)), _Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
