"""chronyd as a loopback NTP server that never touches the system clock (PEERS.md "chrony"):
``chronyd -x -d -f conf`` serving its local clock at stratum 10 on 127.0.0.1:<port>."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.services.timesync import sntp_offset
from tests.support.peers import LoopbackProcess, free_port, require_tool

CONF = """\
local stratum 10
allow 127.0.0.1
bindaddress 127.0.0.1
port {port}
cmdport 0
driftfile {dir}/drift
pidfile {dir}/chronyd.pid
"""


def _answers(port: int) -> bool:
    try:
        sntp_offset("127.0.0.1", port, timeout=0.5)
    except (OSError, ValueError):
        return False
    return True


def chrony_server(tmpdir: Path) -> LoopbackProcess:
    """A started-on-enter chronyd NTP server; ``.port`` is its UDP port."""
    chronyd = require_tool("chronyd")
    port = free_port()
    directory = Path(tmpdir)
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "chrony.conf"
    conf.write_text(CONF.format(port=port, dir=directory))
    user = [] if os.geteuid() == 0 else ["-U"]
    return LoopbackProcess([chronyd, *user, "-x", "-d", "-f", conf], port=port,
                           ready=lambda: _answers(port), name="chronyd", timeout=30)
