"""evidence: the tamper-evident log's mathematics and formats, independent of the appliance.

- :mod:`evidence.merkle`: RFC 6962 / RFC 9162 Merkle trees over SM3 (or SHA-256): roots,
  inclusion and consistency proofs, and their verifiers;
- :mod:`evidence.checkpoint`: signed tree heads in the C2SP tlog-checkpoint / signed-note text
  format, signed with SM2;
- :mod:`evidence.report`: the facts of an evidence report (typed model, canonical JSON);
- :mod:`evidence.render`: the report as a zh-CN PDF with its facts attached;
- :mod:`evidence.verify`: the offline verifier (``verify_report``).

``Report`` and ``verify_report`` load pdfsign, pyHanko and reportlab, so they are imported on
first use: the audit log, which needs only the tree and the checkpoints, stays light.

Threat model: everything here may run on the verifier's side, far from the appliance, on data
the appliance (or whoever rewrote its database) produced.  Verifiers trust only a public key and
the inputs they check; producers never need a secret except the checkpoint signing key.
This package imports ``signcore`` and never ``appliance`` (DESIGN.md section 2).
"""

from typing import Any

from evidence import checkpoint, merkle
from evidence.checkpoint import Checkpoint, NoteSignature
from evidence.errors import (
    CheckpointSignatureError,
    EvidenceError,
    InvalidProof,
    MalformedCheckpoint,
    MalformedReport,
    TreeRangeError,
)
from evidence.merkle import (
    SHA256,
    SM3,
    CompactRange,
    Hasher,
    MerkleTree,
    root_from_inclusion_proof,
    root_of,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "SHA256",
    "SM3",
    "Checkpoint",
    "CheckpointSignatureError",
    "CompactRange",
    "EvidenceError",
    "Hasher",
    "InvalidProof",
    "MalformedCheckpoint",
    "MalformedReport",
    "MerkleTree",
    "NoteSignature",
    "Report",
    "TreeRangeError",
    "checkpoint",
    "merkle",
    "root_from_inclusion_proof",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
    "verify_report",
]


def __getattr__(name: str) -> Any:
    """``Report`` and ``verify_report``, loaded when first asked for (see the docstring)."""
    if name == "Report":
        from evidence.report import Report  # noqa: PLC0415

        return Report
    if name == "verify_report":
        from evidence.verify import verify_report  # noqa: PLC0415

        return verify_report
    raise AttributeError(f"module 'evidence' has no attribute {name!r}")
