"""signcore's strict loader returns trees whose ``dump()`` is the parsed bytes.

asn1crypto fills omitted DEFAULT structures (ESSCertIDv2.hashAlgorithm in RSA time-stamp tokens)
and marks them mutated; without settling them, every dump re-encodes the tree (slow, and not the
signed bytes for non-canonical input)."""

from __future__ import annotations

from signcore import tsp
from signcore._internal import asn1
from signcore.hashes import HashAlgorithm
from tests.support.pki import cached_pki


def _rsa_token() -> bytes:
    pki = cached_pki("rsa2048")
    request = tsp.build_request(data=b"document", hash_algorithm=HashAlgorithm.SHA256)
    return tsp.build_token(hash_algorithm=HashAlgorithm.SHA256,
                           message_imprint=request.message_imprint, signer=pki.tsa_key,
                           certificate=pki.tsa, serial_number=1, policy="1.2.3.4",
                           nonce=request.nonce, extra_certificates=pki.chain)


def test_token_with_omitted_default_is_not_mutated_after_load() -> None:
    token = _rsa_token()
    raw = asn1.cms.ContentInfo.load(token)
    raw._parse_children(recurse=True)
    assert raw._is_mutated(), "asn1crypto no longer fills DEFAULTs as mutated: drop the settling"
    loaded = asn1.load(asn1.cms.ContentInfo, token, "token")
    assert not loaded._is_mutated()
    assert loaded.dump() == token
    ess = loaded["content"]["signer_infos"][0]["signed_attrs"][2]["values"][0]["certs"][0]
    assert ess["hash_algorithm"]["algorithm"].native == "sha256"  # the default still reads


def test_settled_token_still_verifies() -> None:
    pki = cached_pki("rsa2048")
    token = _rsa_token()
    result = tsp.verify_token(token, data=b"document", trust_roots=[pki.root])
    assert result.valid, result.problems
    assert not tsp.verify_token(token, data=b"documenT", trust_roots=[pki.root]).valid
