"""The agent's metrics endpoint speaks Prometheus's text format (checked with its own parser)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.daemon import metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def families() -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition())}


def test_counters_gauges_histograms_parse_with_the_prometheus_parser():
    metrics.FORWARDED.inc()
    metrics.LIBVIRT_CALLS.labels("blockResize").inc(2)
    metrics.FAILED.labels('odd "name"\\\n').inc()
    metrics.GUESTS.set(3)
    metrics.LATENCY.observe(0.004)
    metrics.LATENCY.observe(7.0)
    found = families()
    assert {"avio_resizes_forwarded", "avio_libvirt_calls", "avio_guests_tracked"} <= set(found)
    calls = {s.labels["call"]: s.value for s in found["avio_libvirt_calls"].samples}
    assert calls["blockResize"] >= 2
    failed = {s.labels["action"] for s in found["avio_actions_failed"].samples}
    assert 'odd "name"\\\n' in failed
    assert found["avio_guests_tracked"].samples[0].value == 3
    samples = {
        (s.name, s.labels.get("le")): s.value for s in found["avio_forward_latency_seconds"].samples
    }
    assert samples[("avio_forward_latency_seconds_bucket", "0.005")] >= 1
    assert (
        samples[("avio_forward_latency_seconds_bucket", "+Inf")]
        == samples[("avio_forward_latency_seconds_count", None)]
    )
    assert (
        samples[("avio_forward_latency_seconds_bucket", "2.5")]
        < samples[("avio_forward_latency_seconds_bucket", "+Inf")]
    )


def test_the_endpoint_serves_metrics_and_nothing_else():
    port = free_port()
    metrics.serve(f"127.0.0.1:{port}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    assert "# TYPE avio_resizes_forwarded_total counter" in text
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert err.value.code == 404
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # garbage in
        sock.sendall(b"\xff\xfe\x00\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.0 404")
