"""The TSA's clock check against a real chronyd on loopback (SNTP), and its failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.services import timesync
from appliance.services.timesync import ClockCheck, parse_sources, sntp_offset
from tests.support.chrony import chrony_server
from tests.support.peers import free_port


def test_synchronized_against_chronyd_then_not_when_it_stops(tmp_path: Path) -> None:
    with chrony_server(tmp_path / "chrony") as server:
        port = server.port
        assert port is not None
        assert abs(sntp_offset("127.0.0.1", port)) < 0.5  # it serves this machine's clock
        check = ClockCheck([("127.0.0.1", port)], max_offset=1.0, timeout=1.0)
        status = check.status()
        assert status.synchronized and status.source == f"127.0.0.1:{port}", status
        strict = ClockCheck([("127.0.0.1", port)], max_offset=1e-9, timeout=1.0)
        assert not strict.status().synchronized  # no real clock agrees to a nanosecond
    now = [0.0]
    stopped = ClockCheck([("127.0.0.1", port)], max_offset=1.0, timeout=0.5,
                         monotonic=lambda: now[0])
    status = stopped.status()
    assert not status.synchronized and "无应答" in status.detail
    assert stopped.status() is status  # cached ...
    now[0] += timesync.CHECK_SECONDS
    assert stopped.status() is not status  # ... for a while


def test_no_source_is_never_synchronized() -> None:
    status = ClockCheck([], max_offset=1.0).status()
    assert not status.synchronized and "tsa.ntp_servers" in status.detail


def test_a_silent_port_times_out() -> None:
    with pytest.raises(OSError):
        sntp_offset("127.0.0.1", free_port(), timeout=0.3)


def test_parse_sources() -> None:
    assert parse_sources("ntp1.hospital.local, 10.0.0.2:1123,") == [
        ("ntp1.hospital.local", 123), ("10.0.0.2", 1123)]
    assert parse_sources("") == []
    for bad in ("host:", ":123", "host:70000", "host:x"):
        with pytest.raises(ValueError):
            parse_sources(bad)
