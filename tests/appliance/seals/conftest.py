"""Fixtures of the seal management suites: an unsealed key holder and the whole app."""

from __future__ import annotations

from tests.appliance.ca.conftest import holder, site

__all__ = ["holder", "site"]
