"""Binding to the platform's OpenSSL 3 ``libcrypto`` (cffi, ABI mode).

Why the platform library and not the one bundled in ``cryptography``: the distribution patches
and rebuilds it (security updates reach the appliance through ``apt``), and DESIGN.md section 3
puts SM2, SM3, SM4 and every secret-scalar point multiplication on it.

The binding is deliberately small: only the functions signcore calls are declared, every call
that can fail goes through :func:`check` so an OpenSSL failure becomes a typed exception with the
OpenSSL reason string, and owned pointers are wrapped with ``ffi.gc`` so they are freed when the
Python object dies.  The module holds no mutable state besides the loaded library handle and
algorithm handles fetched once at load time (immutable for the life of the process).
"""

from __future__ import annotations

import ctypes.util
import os
import threading
from dataclasses import dataclass
from typing import Any

import cffi

from signcore.errors import BackendError

_CDEF = """
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;
typedef struct ossl_decoder_ctx_st OSSL_DECODER_CTX;
typedef struct ossl_encoder_ctx_st OSSL_ENCODER_CTX;
typedef struct ec_group_st EC_GROUP;
typedef struct ec_point_st EC_POINT;
typedef struct bignum_st BIGNUM;
typedef struct bignum_ctx BN_CTX;
typedef struct engine_st ENGINE;

unsigned long OpenSSL_version_num(void);
const char *OpenSSL_version(int type);

unsigned long ERR_get_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
void ERR_clear_error(void);

void CRYPTO_free(void *ptr, const char *file, int line);
void OPENSSL_cleanse(void *ptr, size_t len);

EVP_MD *EVP_MD_fetch(OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_MD_CTX_copy_ex(EVP_MD_CTX *out, const EVP_MD_CTX *in);
int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl);
int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);
int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s);
int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const EVP_MD *type, ENGINE *impl);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);

EVP_CIPHER *EVP_CIPHER_fetch(OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties);
EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);
void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx);
int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX *x, int padding);
int EVP_CipherInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *type, ENGINE *impl,
                      const unsigned char *key, const unsigned char *iv, int enc);
int EVP_CipherUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                     const unsigned char *in, int inl);
int EVP_CipherFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl);

void EVP_PKEY_free(EVP_PKEY *key);
int EVP_PKEY_is_a(const EVP_PKEY *pkey, const char *name);
int EVP_PKEY_get_octet_string_param(const EVP_PKEY *pkey, const char *key_name,
                                    unsigned char *buf, size_t max_buf_sz, size_t *out_sz);
int EVP_PKEY_get_bn_param(const EVP_PKEY *pkey, const char *key_name, BIGNUM **bn);
EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_name(OSSL_LIB_CTX *libctx, const char *name,
                                         const char *propquery);
EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey,
                                         const char *propquery);
void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
int EVP_PKEY_keygen_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_pairwise_check(EVP_PKEY_CTX *ctx);
int EVP_PKEY_private_check(EVP_PKEY_CTX *ctx);
int EVP_PKEY_public_check(EVP_PKEY_CTX *ctx);
int EVP_PKEY_generate(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey);
int EVP_PKEY_sign_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_sign(EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen,
                  const unsigned char *tbs, size_t tbslen);
int EVP_PKEY_verify_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_verify(EVP_PKEY_CTX *ctx, const unsigned char *sig, size_t siglen,
                    const unsigned char *tbs, size_t tbslen);
int EVP_PKEY_encrypt_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_encrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen,
                     const unsigned char *in, size_t inlen);
int EVP_PKEY_decrypt_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_decrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen,
                     const unsigned char *in, size_t inlen);

OSSL_DECODER_CTX *OSSL_DECODER_CTX_new_for_pkey(EVP_PKEY **pkey, const char *input_type,
    const char *input_struct, const char *keytype, int selection,
    OSSL_LIB_CTX *libctx, const char *propquery);
int OSSL_DECODER_CTX_set_passphrase(OSSL_DECODER_CTX *ctx, const unsigned char *kstr,
                                    size_t klen);
int OSSL_DECODER_CTX_get_num_decoders(OSSL_DECODER_CTX *ctx);
int OSSL_DECODER_from_data(OSSL_DECODER_CTX *ctx, const unsigned char **pdata, size_t *pdata_len);
void OSSL_DECODER_CTX_free(OSSL_DECODER_CTX *ctx);

OSSL_ENCODER_CTX *OSSL_ENCODER_CTX_new_for_pkey(const EVP_PKEY *pkey, int selection,
    const char *output_type, const char *output_struct, const char *propquery);
int OSSL_ENCODER_CTX_set_cipher(OSSL_ENCODER_CTX *ctx, const char *cipher_name,
                                const char *propquery);
int OSSL_ENCODER_CTX_set_passphrase(OSSL_ENCODER_CTX *ctx, const unsigned char *kstr,
                                    size_t klen);
int OSSL_ENCODER_CTX_get_num_encoders(OSSL_ENCODER_CTX *ctx);
int OSSL_ENCODER_to_data(OSSL_ENCODER_CTX *ctx, unsigned char **pdata, size_t *pdata_len);
void OSSL_ENCODER_CTX_free(OSSL_ENCODER_CTX *ctx);

EC_GROUP *EC_GROUP_new_by_curve_name(int nid);
void EC_GROUP_free(EC_GROUP *group);
EC_POINT *EC_POINT_new(const EC_GROUP *group);
void EC_POINT_free(EC_POINT *point);
int EC_POINT_oct2point(const EC_GROUP *group, EC_POINT *p, const unsigned char *buf,
                       size_t len, BN_CTX *ctx);
size_t EC_POINT_point2oct(const EC_GROUP *group, const EC_POINT *p, int form,
                          unsigned char *buf, size_t len, BN_CTX *ctx);
int EC_POINT_mul(const EC_GROUP *group, EC_POINT *r, const BIGNUM *n, const EC_POINT *q,
                 const BIGNUM *m, BN_CTX *ctx);
int EC_POINT_add(const EC_GROUP *group, EC_POINT *r, const EC_POINT *a, const EC_POINT *b,
                 BN_CTX *ctx);
int EC_POINT_invert(const EC_GROUP *group, EC_POINT *a, BN_CTX *ctx);
int EC_POINT_is_at_infinity(const EC_GROUP *group, const EC_POINT *p);
int EC_POINT_is_on_curve(const EC_GROUP *group, const EC_POINT *point, BN_CTX *ctx);

BIGNUM *BN_new(void);
void BN_clear_free(BIGNUM *a);
BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret);
int BN_bn2binpad(const BIGNUM *a, unsigned char *to, int tolen);
int BN_cmp(const BIGNUM *a, const BIGNUM *b);
int BN_is_zero(const BIGNUM *a);
int BN_num_bits(const BIGNUM *a);
void BN_set_flags(BIGNUM *b, int n);
BN_CTX *BN_CTX_new(void);
void BN_CTX_free(BN_CTX *c);
typedef struct bn_mont_ctx_st BN_MONT_CTX;
int BN_mod_exp_mont_consttime(BIGNUM *rr, const BIGNUM *a, const BIGNUM *p, const BIGNUM *m,
                              BN_CTX *ctx, BN_MONT_CTX *in_mont);
"""

# Selections and constants from <openssl/core_dispatch.h>, <openssl/ec.h>, <openssl/obj_mac.h>.
EVP_PKEY_KEYPAIR = 0x87  # private + public + domain parameters
EVP_PKEY_PUBLIC_KEY = 0x86  # public + domain parameters
POINT_CONVERSION_UNCOMPRESSED = 4
NID_SM2 = 1172
BN_FLG_CONSTTIME = 0x04
OPENSSL_3 = 0x30000000


@dataclass(frozen=True)
class Backend:
    """The loaded library and the algorithm handles signcore needs, fetched once."""

    ffi: cffi.FFI
    lib: Any
    sm3: Any  # EVP_MD *
    sm4_cbc: Any  # EVP_CIPHER *
    sm4_ecb: Any  # EVP_CIPHER *
    sm4_gcm: Any  # EVP_CIPHER * or ffi.NULL where the platform lacks SM4-GCM (OpenSSL 3.0)
    sm2_group: Any  # EC_GROUP *
    version: str


_lock = threading.Lock()
_backend: Backend | None = None


def _library_candidates() -> list[str]:
    explicit = os.environ.get("MEDSIGN_LIBCRYPTO")
    if explicit:
        return [explicit]
    found = ctypes.util.find_library("crypto")
    names = ["libcrypto.so.3"]
    if found and found not in names:
        names.append(found)
    return names


def _load() -> Backend:
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    errors = []
    lib: Any = None
    for name in _library_candidates():
        try:
            lib = ffi.dlopen(name)
            break
        except OSError as exc:
            errors.append(f"{name}: {exc}")
    if lib is None:
        raise BackendError("cannot load the platform libcrypto (OpenSSL 3): " + "; ".join(errors))
    try:
        version_num = lib.OpenSSL_version_num()
    except AttributeError:  # cffi resolves symbols lazily: this is not a libcrypto at all
        raise BackendError(f"{name} is not an OpenSSL libcrypto") from None
    if version_num < OPENSSL_3:
        raise BackendError("the platform libcrypto is older than OpenSSL 3.0")
    sm3 = lib.EVP_MD_fetch(ffi.NULL, b"SM3", ffi.NULL)
    sm4_cbc = lib.EVP_CIPHER_fetch(ffi.NULL, b"SM4-CBC", ffi.NULL)
    sm4_ecb = lib.EVP_CIPHER_fetch(ffi.NULL, b"SM4-ECB", ffi.NULL)
    sm4_gcm = lib.EVP_CIPHER_fetch(ffi.NULL, b"SM4-GCM", ffi.NULL)
    group = lib.EC_GROUP_new_by_curve_name(NID_SM2)
    sm2_ctx = lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL)
    lib.ERR_clear_error()
    missing = [
        name
        for name, handle in (("SM3", sm3), ("SM4-CBC", sm4_cbc), ("SM4-ECB", sm4_ecb),
                             ("SM2 curve", group), ("SM2", sm2_ctx))
        if handle == ffi.NULL
    ]
    if missing:
        raise BackendError(
            "the platform libcrypto lacks " + ", ".join(missing)
            + "; medsign needs an OpenSSL 3 build with SM2/SM3/SM4 (Debian's openssl has them)"
        )
    lib.EVP_PKEY_CTX_free(sm2_ctx)
    version = _c_string(ffi, lib.OpenSSL_version(0))
    return Backend(ffi, lib, sm3, sm4_cbc, sm4_ecb, sm4_gcm, group, version)


def _c_string(ffi: cffi.FFI, pointer: Any) -> str:
    raw = ffi.string(pointer)
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def backend() -> Backend:
    """Return the process-wide backend, loading and self-checking it on first use."""
    global _backend  # noqa: PLW0603 - a load-once cache of an immutable handle set
    if _backend is None:
        with _lock:
            if _backend is None:
                _backend = _load()
    return _backend


def openssl_error(be: Backend, what: str) -> str:
    """Drain OpenSSL's thread-local error queue into one line."""
    reasons = []
    buf = be.ffi.new("char[]", 256)
    while True:
        code = be.lib.ERR_get_error()
        if code == 0:
            break
        be.lib.ERR_error_string_n(code, buf, 256)
        reasons.append(_c_string(be.ffi, buf))
    return f"{what}: {'; '.join(reasons)}" if reasons else what


def failure(be: Backend, what: str) -> BackendError:
    """A BackendError carrying OpenSSL's reasons, for the caller to raise."""
    return BackendError(openssl_error(be, what))


def check(be: Backend, ok: int, what: str, exc: type[Exception] = BackendError) -> None:
    """Raise ``exc`` with OpenSSL's reason when a libcrypto call returned <= 0."""
    if ok <= 0:
        raise exc(openssl_error(be, what))


def clear_errors(be: Backend) -> None:
    be.lib.ERR_clear_error()
