"""Between :class:`SignatureAlgorithm` and ASN.1 AlgorithmIdentifiers, both ways.

What we emit:
- X.509, CRL, CSR, and RFC 5652 CMS with SM2: ``sm2-with-sm3`` ``1.2.156.10197.1.501``, no
  parameters (what OpenSSL and GM/T 0015 certificates use).
- GM/T 0010 CMS SignerInfo: ``1.2.156.10197.1.301.1`` (the "SM2-1" OID GM/T 0010 names).
- RSA: ``sha256WithRSAEncryption`` (NULL parameters) or RSASSA-PSS with explicit parameters;
  in CMS SignerInfo RSA PKCS#1 v1.5 is ``rsaEncryption`` as RFC 5754 recommends.
- ECDSA: ``ecdsa-with-SHA256``, no parameters.
What we accept: all of the above in every place, since Chinese implementations mix them.
"""

from __future__ import annotations

from signcore._internal.asn1 import algos
from signcore.algorithms import OID_SM2_SIGN, OID_SM2_WITH_SM3, OID_SM3, SignatureAlgorithm
from signcore.errors import UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm

_OID_RSA = "1.2.840.113549.1.1.1"
_OID_RSA_PSS = "1.2.840.113549.1.1.10"
_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"

_BY_OID: dict[str, SignatureAlgorithm] = {
    OID_SM2_WITH_SM3: SignatureAlgorithm.SM2_SM3,
    OID_SM2_SIGN: SignatureAlgorithm.SM2_SM3,
    "1.2.840.113549.1.1.11": SignatureAlgorithm.RSA_PKCS1_SHA256,
    "1.2.840.113549.1.1.12": SignatureAlgorithm.RSA_PKCS1_SHA384,
    "1.2.840.113549.1.1.13": SignatureAlgorithm.RSA_PKCS1_SHA512,
    "1.2.840.10045.4.3.2": SignatureAlgorithm.ECDSA_SHA256,
}

_RSA_BY_HASH = {
    HashAlgorithm.SHA256: SignatureAlgorithm.RSA_PKCS1_SHA256,
    HashAlgorithm.SHA384: SignatureAlgorithm.RSA_PKCS1_SHA384,
    HashAlgorithm.SHA512: SignatureAlgorithm.RSA_PKCS1_SHA512,
}

_DIGEST_OIDS = {
    HashAlgorithm.SM3: OID_SM3,
    HashAlgorithm.SHA256: "2.16.840.1.101.3.4.2.1",
    HashAlgorithm.SHA384: "2.16.840.1.101.3.4.2.2",
    HashAlgorithm.SHA512: "2.16.840.1.101.3.4.2.3",
}
_DIGEST_BY_OID = {oid: alg for alg, oid in _DIGEST_OIDS.items()}


def digest_algorithm_id(algorithm: HashAlgorithm) -> algos.DigestAlgorithm:
    """DigestAlgorithmIdentifier.  asn1crypto writes NULL parameters for SHA-2 (RFC 5754 asks
    for absent ones but requires receivers to accept both); SM3 gets absent parameters."""
    return algos.DigestAlgorithm({"algorithm": _DIGEST_OIDS[algorithm]})


def hash_from_digest_id(value: algos.DigestAlgorithm) -> HashAlgorithm:
    oid = value["algorithm"].dotted
    try:
        return _DIGEST_BY_OID[oid]
    except KeyError:
        raise UnsupportedAlgorithm(f"unsupported digest algorithm {oid}") from None


def _pss_params(algorithm: SignatureAlgorithm) -> algos.RSASSAPSSParams:
    hash_name = algorithm.hash_algorithm.value
    return algos.RSASSAPSSParams({
        "hash_algorithm": {"algorithm": hash_name},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": hash_name}},
        "salt_length": algorithm.hash_algorithm.digest_size,
    })


def signature_algorithm_id(
    algorithm: SignatureAlgorithm, *, cms_signer_info: bool = False, gm_flavor: bool = False
) -> algos.SignedDigestAlgorithm:
    """The AlgorithmIdentifier to emit for ``algorithm`` (see the module docstring)."""
    if algorithm is SignatureAlgorithm.SM2_SM3:
        oid = OID_SM2_SIGN if gm_flavor else OID_SM2_WITH_SM3
        return algos.SignedDigestAlgorithm({"algorithm": oid})
    if algorithm.is_pss:
        return algos.SignedDigestAlgorithm(
            {"algorithm": _OID_RSA_PSS, "parameters": _pss_params(algorithm)}
        )
    if algorithm is SignatureAlgorithm.ECDSA_SHA256:
        return algos.SignedDigestAlgorithm({"algorithm": "1.2.840.10045.4.3.2"})
    if cms_signer_info:
        return algos.SignedDigestAlgorithm({"algorithm": _OID_RSA, "parameters": None})
    oid = next(o for o, a in _BY_OID.items() if a is algorithm)
    return algos.SignedDigestAlgorithm({"algorithm": oid, "parameters": None})


def signature_algorithm_from_id(
    value: algos.SignedDigestAlgorithm, digest: HashAlgorithm | None = None
) -> SignatureAlgorithm:
    """Map an AlgorithmIdentifier (and, in CMS, the SignerInfo digest algorithm) to ours."""
    oid = value["algorithm"].dotted
    known = _BY_OID.get(oid)
    if known is not None:
        return known
    if oid == _OID_RSA_PSS:
        return _pss_from_params(value)
    if oid == _OID_RSA and digest in _RSA_BY_HASH:
        return _RSA_BY_HASH[digest]
    if oid == _OID_EC_PUBLIC_KEY and digest is HashAlgorithm.SHA256:
        return SignatureAlgorithm.ECDSA_SHA256
    raise UnsupportedAlgorithm(f"unsupported signature algorithm {oid}")


def _pss_from_params(value: algos.SignedDigestAlgorithm) -> SignatureAlgorithm:
    params = value["parameters"]
    try:
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        salt = params["salt_length"].native
    except (KeyError, TypeError, ValueError) as exc:
        raise UnsupportedAlgorithm(f"malformed RSASSA-PSS parameters: {exc}") from exc
    # Any salt length verifies (PSS recovers it); OpenSSL signs with the maximum by default.
    if hash_name == "sha256" and mgf_hash == "sha256" and isinstance(salt, int) and salt >= 0:
        return SignatureAlgorithm.RSA_PSS_SHA256
    raise UnsupportedAlgorithm(
        f"RSASSA-PSS with {hash_name}/MGF1-{mgf_hash}/salt {salt} is not supported"
    )
