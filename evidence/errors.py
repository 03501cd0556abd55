"""The exceptions evidence raises.

A small flat tree: callers catch :class:`EvidenceError` for "the evidence does not hold", or a
leaf to tell the cases apart.  Leaves that describe malformed *input* are also ``ValueError``.
"""

from __future__ import annotations


class EvidenceError(Exception):
    """Base class of everything evidence raises on purpose."""


class TreeRangeError(EvidenceError, ValueError):
    """A leaf index or tree size outside the tree (or a first size larger than a second)."""


class InvalidProof(EvidenceError):
    """An inclusion or consistency proof does not verify against the given roots."""


class MalformedCheckpoint(EvidenceError, ValueError):
    """Text that is not a well-formed signed checkpoint (C2SP tlog-checkpoint + signed-note)."""


class CheckpointSignatureError(EvidenceError):
    """A checkpoint carries no valid signature by the expected key."""


class MalformedReport(EvidenceError, ValueError):
    """An evidence report whose facts (embedded JSON) or PDF structure cannot be read."""
