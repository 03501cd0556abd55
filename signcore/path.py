"""Certificate path building and validation (RFC 5280 section 6, the parts a signing appliance
needs): name chaining with key-identifier matching, signatures (SM2 with the default ID, RSA,
ECDSA), validity periods at a given time, CA basic constraints and path lengths, keyCertSign,
EKU of the end entity, and refusal of unknown critical extensions.

Threat model: every certificate except the trust roots comes from the party being verified (it
was embedded in a signature), so nothing in them is trusted until a signature chain from a root
covers it.  Revocation is not checked here: the caller supplies CRL/OCSP evidence separately
(ca_client owns fetching and caching it).  Name constraints and policy processing are not
implemented, so a certificate marking either critical is refused rather than half-checked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from signcore.errors import InvalidSignature, PathValidationError, SigncoreError
from signcore.x509 import Certificate, names_equal

__all__ = ["ValidatedPath", "validate_path"]

MAX_PATH_LENGTH = 8
#: Candidate issuers tried (signature checks) per validation.  Hostile input can hold many
#: same-named CA certificates under one key, each of which verifies every other: without a
#: budget, path building would try every ordering of them (factorially many).
MAX_SIGNATURE_CHECKS = 64
_UNDERSTOOD_CRITICAL = {
    "basic_constraints", "key_usage", "extended_key_usage", "subject_alt_name",
    "certificate_policies", "authority_key_identifier", "key_identifier",
}
_ANY_EKU = "any_extended_key_usage"


@dataclass(frozen=True)
class ValidatedPath:
    """A validated chain: the end-entity certificate first, the trust root last."""

    certificates: tuple[Certificate, ...]

    @property
    def leaf(self) -> Certificate:
        return self.certificates[0]

    @property
    def root(self) -> Certificate:
        return self.certificates[-1]


def _could_issue(issuer: Certificate, child: Certificate) -> bool:
    if not names_equal(issuer.subject_name, child.issuer_name):
        return False
    aki, ski = child.authority_key_identifier, issuer.subject_key_identifier
    return aki is None or ski is None or aki == ski


def _check_common(cert: Certificate, at: dt.datetime) -> None:
    if not cert.is_valid_at(at):
        raise PathValidationError(
            f"certificate {cert.subject!r} is not valid at {at.isoformat()} "
            f"(valid {cert.not_before.isoformat()} to {cert.not_after.isoformat()})")
    unknown = cert.critical_extension_names() - _UNDERSTOOD_CRITICAL
    if unknown:
        raise PathValidationError(
            f"certificate {cert.subject!r} has unsupported critical extensions {sorted(unknown)}")


def _check_issuer(issuer: Certificate, below: int) -> None:
    """``below``: how many non-self-issued CA certificates sit under this one in the path."""
    if not issuer.is_ca:
        raise PathValidationError(f"issuer {issuer.subject!r} is not a CA")
    usage = issuer.extensions.key_usage
    if usage and "key_cert_sign" not in usage:
        raise PathValidationError(f"issuer {issuer.subject!r} lacks keyCertSign")
    limit = issuer.extensions.path_length
    if limit is not None and below > limit:
        raise PathValidationError(
            f"path length constraint {limit} of {issuer.subject!r} exceeded")


def _check_leaf(leaf: Certificate, required_eku: str | None) -> None:
    if required_eku is None:
        return
    ekus = leaf.extensions.extended_key_usage
    if ekus and required_eku not in ekus and _ANY_EKU not in ekus:
        raise PathValidationError(
            f"certificate {leaf.subject!r} is not valid for {required_eku} (EKU {list(ekus)})")


def validate_path(
    leaf: Certificate,
    *,
    trust_roots: Sequence[Certificate],
    intermediates: Sequence[Certificate] = (),
    at: dt.datetime | None = None,
    required_eku: str | None = None,
) -> ValidatedPath:
    """Build and validate a path from ``leaf`` to one of ``trust_roots``.

    Raises :class:`PathValidationError` naming the most specific reason found.
    """
    when = at or dt.datetime.now(dt.UTC)
    roots = list(dict.fromkeys(trust_roots))
    pool = [c for c in dict.fromkeys(intermediates) if c not in roots]
    _check_common(leaf, when)
    _check_leaf(leaf, required_eku)
    failures: list[str] = []
    path = _extend([leaf], roots, pool, when, failures, budget=[MAX_SIGNATURE_CHECKS])
    if path is None:
        reason = failures[-1] if failures else (
            f"no path from {leaf.subject!r} (issuer {leaf.issuer!r}) to a trusted root")
        raise PathValidationError(reason)
    return ValidatedPath(tuple(path))


def _extend(path: list[Certificate], roots: list[Certificate], pool: list[Certificate],
            when: dt.datetime, failures: list[str], *, budget: list[int]
            ) -> list[Certificate] | None:
    current = path[-1]
    if current in roots:
        return path
    if len(path) > MAX_PATH_LENGTH:
        failures.append(f"no path within {MAX_PATH_LENGTH} certificates")
        return None
    candidates = [c for c in roots + pool if c not in path and _could_issue(c, current)]
    for issuer in candidates:
        if budget[0] <= 0:
            failures.append(f"path building gave up after {MAX_SIGNATURE_CHECKS} signature checks")
            return None
        budget[0] -= 1
        try:
            current.verify_signature(issuer.public_key())
            _check_common(issuer, when)
            below = sum(1 for c in path[1:] if not c.is_self_issued)
            _check_issuer(issuer, below)
        except InvalidSignature:
            failures.append(f"signature on {current.subject!r} does not verify with the key of "
                            f"{issuer.subject!r}")
            continue
        except (PathValidationError, SigncoreError) as exc:
            failures.append(str(exc))
            continue
        found = _extend([*path, issuer], roots, pool, when, failures, budget=budget)
        if found is not None:
            return found
    return None
