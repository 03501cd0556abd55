"""Is the appliance's clock right?  The TSA asks before every time stamp it issues.

The appliance's clock is disciplined by chronyd against the hospital's NTP servers (the
appliance image configures it).  The TSA does not trust that blindly: it measures its own
clock's offset against the configured time sources with SNTP (RFC 4330 client mode, the
offset of the best answer) and issues only while some source answers with an offset within
``tsa.max_offset_ms``.  A measurement is reused for ``CHECK_SECONDS`` so that a burst of
requests costs one round trip.

Threat model: an attacker who can answer for the time source on the network could make the
TSA believe its clock is right when it is not -- the hospital's NTP servers must be on a trusted
segment (or NTS, configured in chronyd).  What this check prevents is the common failure: a
box whose clock drifted or was set wrong, stamping wrong times with a valid signature.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
CHECK_SECONDS = 15.0
_PACKET = struct.Struct("!B B b b 11I")


@dataclasses.dataclass(frozen=True)
class ClockStatus:
    synchronized: bool
    offset_seconds: float | None  # of the best answering source (ours minus theirs, negated)
    source: str | None
    detail: str  # zh-CN for the console and the problem document


def _to_ntp(seconds: float) -> tuple[int, int]:
    whole = int(seconds) + NTP_EPOCH_OFFSET
    return whole, int((seconds - int(seconds)) * 2**32) & 0xFFFFFFFF


def _from_ntp(whole: int, fraction: int) -> float:
    return whole - NTP_EPOCH_OFFSET + fraction / 2**32


def sntp_offset(host: str, port: int = 123, *, timeout: float = 2.0,
                clock: Callable[[], float] = time.time) -> float:
    """The offset of the server's clock from ours, in seconds (positive: ours is behind).
    OSError or ValueError when it does not answer a well-formed, synchronized reply."""
    packet = bytearray(48)
    packet[0] = (0 << 6) | (4 << 3) | 3  # no leap warning, version 4, mode 3 (client)
    sent = clock()
    origin = _to_ntp(sent)
    struct.pack_into("!II", packet, 40, *origin)  # transmit timestamp: echoed as origin
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(bytes(packet), (host, port))
        while True:
            data, _ = sock.recvfrom(512)
            received = clock()
            if len(data) >= 48 and struct.unpack_from("!II", data, 24) == origin:
                break  # an answer to this query, not a stray datagram
    first, stratum = data[0], data[1]
    leap, mode = first >> 6, first & 7
    if mode != 4 or leap == 3 or not 0 < stratum < 16:
        raise ValueError(f"the time source is not synchronized (leap {leap}, stratum "
                         f"{stratum}, mode {mode})")
    server_received = _from_ntp(*struct.unpack_from("!II", data, 32))
    server_sent = _from_ntp(*struct.unpack_from("!II", data, 40))
    return ((server_received - sent) + (server_sent - received)) / 2


def parse_sources(text: str) -> list[tuple[str, int]]:
    """``"ntp1.hospital.local, 10.0.0.2:1123"`` -> [(host, port), ...] (port 123 by default);
    ValueError for a malformed entry."""
    sources = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        # host, host:port, or a bare IPv6 address (several colons: no port)
        host, port = item.split(":") if item.count(":") == 1 else (item, "123")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad time source {item!r} (host or host:port)")
        sources.append((host, int(port)))
    return sources


class ClockCheck:
    """The clock's status against ``sources``, measured at most every ``CHECK_SECONDS``."""

    def __init__(self, sources: Sequence[tuple[str, int]], *, max_offset: float,
                 timeout: float = 2.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._sources = list(sources)
        self._max_offset, self._timeout, self._monotonic = max_offset, timeout, monotonic
        self._lock = threading.Lock()
        self._cached: tuple[int, float, ClockStatus] | None = None  # pid, when, status

    def status(self) -> ClockStatus:
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] == os.getpid() and \
                    self._monotonic() - cached[1] < CHECK_SECONDS:
                return cached[2]
            status = self._measure()
            self._cached = (os.getpid(), self._monotonic(), status)
            return status

    def _measure(self) -> ClockStatus:
        if not self._sources:
            return ClockStatus(False, None, None, "未配置时间源（tsa.ntp_servers）")
        problems = []
        best: tuple[float, str] | None = None
        for host, port in self._sources:
            try:
                offset = sntp_offset(host, port, timeout=self._timeout)
            except (OSError, ValueError) as exc:
                problems.append(f"{host}:{port}: {exc or type(exc).__name__}")
                continue
            if best is None or abs(offset) < abs(best[0]):
                best = (offset, f"{host}:{port}")
        if best is None:
            return ClockStatus(False, None, None, "时间源均无应答：" + "; ".join(problems))
        offset, source = best
        if abs(offset) > self._max_offset:
            return ClockStatus(False, offset, source,
                               f"本机时钟与时间源 {source} 相差 {offset:+.3f} 秒，超过允许的 "
                               f"{self._max_offset:.3f} 秒")
        return ClockStatus(True, offset, source, f"已与 {source} 同步（偏差 {offset:+.3f} 秒）")
