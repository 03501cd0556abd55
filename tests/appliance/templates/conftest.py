"""Fixtures of the template suites: the mobile suites' hospital (whole app, SM2 CA, active
doctor and pharmacist, a backend credential) on both engines."""

from __future__ import annotations

from tests.appliance.mobile.conftest import holder, hospital

__all__ = ["holder", "hospital"]
