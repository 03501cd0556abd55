"""The demo principals of ``medsign init --demo``: one console account per role and one
application credential, created through the accounts services and written (with their secrets)
to ``demo-credentials.txt``, mode 0600.  Idempotent: when the file exists, nothing is created
again and only its place is printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def ensure_demo_principals(config: Any, database: Any, keyring: Any, credentials: Path) -> None:
    if credentials.exists():
        print(f"demo: console accounts and the application credential are in {credentials}")
        return
    print("demo: console accounts and application credentials are not available yet "
          "(the accounts services are not built); only the KEK was created")
