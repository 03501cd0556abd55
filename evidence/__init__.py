"""evidence: the tamper-evident log's mathematics and formats, independent of the appliance.

- :mod:`evidence.merkle`: RFC 6962 / RFC 9162 Merkle trees over SM3 (or SHA-256): roots,
  inclusion and consistency proofs, and their verifiers;
- :mod:`evidence.checkpoint`: signed tree heads in the C2SP tlog-checkpoint / signed-note text
  format, signed with SM2.

Threat model: everything here may run on the verifier's side, far from the appliance, on data
the appliance (or whoever rewrote its database) produced.  Verifiers trust only a public key and
the inputs they check; producers never need a secret except the checkpoint signing key.
This package imports ``signcore`` and never ``appliance`` (DESIGN.md section 2).
"""

from evidence import checkpoint, merkle
from evidence.checkpoint import Checkpoint, NoteSignature
from evidence.errors import (
    CheckpointSignatureError,
    EvidenceError,
    InvalidProof,
    MalformedCheckpoint,
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
    "MerkleTree",
    "NoteSignature",
    "TreeRangeError",
    "checkpoint",
    "merkle",
    "root_from_inclusion_proof",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]
