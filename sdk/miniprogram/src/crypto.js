'use strict'
/**
 * The phone's cryptography, byte-compatible with the appliance (keysplit/README.md):
 *
 * - SM3, HMAC-SM3 (sm-crypto's sm3 with its `key` option, RFC 2104 with a 64-byte block);
 * - SM4-GCM (NIST SP 800-38D over sm-crypto's SM4 block function: sm-crypto has ECB/CBC only);
 * - the PIN proof and the phone-share wrap of keysplit/pin.py;
 * - SM2 points, Z and e = SM3(Z || M), DER (r, s), verification over a given e;
 * - the device key: SM2 with SM3 and the default ID 1234567812345678 (MEDSIGN-DEVICE-SM2);
 * - the phone's side of two-party SM2 (keysplit/phone.py): PhoneKeygen, PhoneCosigner, PhoneShare.
 *
 * Every secret comes from ./random (a CSPRNG), never from sm-crypto's internal RC4 generator.
 * Scalars are jsbn BigIntegers (the library sm-crypto is built on; it runs on every mini-program
 * runtime).  Point multiplication and verification use ./ec (native BigInt, ~20-90x faster)
 * where the runtime has BigInt, else sm-crypto; setBackend() chooses (the tests run both).
 * Residual (as for the Python reference): neither jsbn nor BigInt arithmetic is constant-time.
 */

const { BigInteger } = require('jsbn')
const { concat, equal, fromHex, toBytes, toHex, utf8Encode } = require('./bytes')
const { randomBytes } = require('./random')
const errors = require('./errors')

const HAS_BIGINT = typeof BigInt === 'function'
let useBigInt = HAS_BIGINT
// eslint-disable-next-line global-require
const ec = HAS_BIGINT ? require('./ec') : null

/** 'bigint' (native BigInt EC, the default where available) or 'sm-crypto' (tests, old runtimes). */
function setBackend(name) {
  if (name !== 'bigint' && name !== 'sm-crypto') throw new TypeError('backend: bigint or sm-crypto')
  if (name === 'bigint' && !HAS_BIGINT) throw new Error('this runtime has no BigInt')
  useBigInt = name === 'bigint'
}

let smCrypto = null
/** sm-crypto, loaded on first use (a mini program may have to install a random source first). */
function sm() {
  // eslint-disable-next-line global-require
  if (!smCrypto) smCrypto = require('sm-crypto')
  return smCrypto
}

// --- SM2 curve constants (GB/T 32918.5) ------------------------------------------------------

const CURVE = {
  p: 'fffffffeffffffffffffffffffffffffffffffff00000000ffffffffffffffff',
  a: 'fffffffeffffffffffffffffffffffffffffffff00000000fffffffffffffffc',
  b: '28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93',
  n: 'fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123',
  gx: '32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7',
  gy: 'bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0',
}
const N = new BigInteger(CURVE.n, 16)
const P = new BigInteger(CURVE.p, 16)
const DEFAULT_ID = '1234567812345678'
const SPKI_PREFIX = fromHex('3059301306072a8648ce3d020106082a811ccf5501822d034200')

// --- hashes ----------------------------------------------------------------------------------

function sm3(data) {
  return fromHex(sm().sm3(Array.from(toBytes(data))))
}

/** HMAC-SM3 (RFC 2104, 64-byte block, 32-byte output). */
function hmacSm3(key, data) {
  return fromHex(sm().sm3(Array.from(toBytes(data)), { key: Array.from(toBytes(key)) }))
}

// --- SM4-GCM ---------------------------------------------------------------------------------

const SM4_KEY_SIZE = 16
const GCM_NONCE_SIZE = 12
const GCM_TAG_SIZE = 16

/** SM4 applied to each 16-byte block of `blocks` (ECB, no padding). */
function sm4Blocks(key, blocks) {
  const out = sm().sm4.encrypt(Array.from(blocks), Array.from(key), { padding: 'none', output: 'array' })
  return Uint8Array.from(out)
}

function words(block, offset = 0) {
  return [0, 4, 8, 12].map((i) => ((block[offset + i] << 24) | (block[offset + i + 1] << 16)
    | (block[offset + i + 2] << 8) | block[offset + i + 3]) >>> 0)
}

/** X * Y in GF(2^128) with GCM's bit order (SP 800-38D algorithm 1); 4-word arrays. */
function gfMul(x, y) {
  let z0 = 0; let z1 = 0; let z2 = 0; let z3 = 0
  let [v0, v1, v2, v3] = y
  for (let i = 0; i < 128; i++) {
    if ((x[i >> 5] >>> (31 - (i & 31))) & 1) {
      z0 ^= v0; z1 ^= v1; z2 ^= v2; z3 ^= v3
    }
    const lsb = v3 & 1
    v3 = ((v3 >>> 1) | (v2 << 31)) >>> 0
    v2 = ((v2 >>> 1) | (v1 << 31)) >>> 0
    v1 = ((v1 >>> 1) | (v0 << 31)) >>> 0
    v0 >>>= 1
    if (lsb) v0 = (v0 ^ 0xe1000000) >>> 0
  }
  return [z0 >>> 0, z1 >>> 0, z2 >>> 0, z3 >>> 0]
}

function ghash(h, aad, ciphertext) {
  const hw = words(h)
  let y = [0, 0, 0, 0]
  const absorb = (data) => {
    for (let off = 0; off < data.length; off += 16) {
      const block = new Uint8Array(16)
      block.set(data.subarray(off, Math.min(off + 16, data.length)))
      const b = words(block)
      y = gfMul([y[0] ^ b[0], y[1] ^ b[1], y[2] ^ b[2], y[3] ^ b[3]], hw)
    }
  }
  absorb(aad)
  absorb(ciphertext)
  const lengths = new Uint8Array(16)
  const put64 = (offset, bytes) => {
    const bits = bytes * 8 // < 2^53
    const hi = Math.floor(bits / 0x100000000)
    const lo = bits >>> 0
    lengths.set([hi >>> 24, (hi >>> 16) & 255, (hi >>> 8) & 255, hi & 255, lo >>> 24, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255], offset)
  }
  put64(0, aad.length)
  put64(8, ciphertext.length)
  absorb(lengths)
  const out = new Uint8Array(16)
  y.forEach((w, i) => out.set([w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255], i * 4))
  return out
}

/** H = E(0), E(J0), then the keystream blocks E(inc32(J0)), E(inc32^2(J0)), ... */
function gcmKeystream(key, nonce, length) {
  if (key.length !== SM4_KEY_SIZE) throw new TypeError(`SM4 keys are ${SM4_KEY_SIZE} bytes`)
  if (nonce.length !== GCM_NONCE_SIZE) throw new TypeError(`SM4-GCM nonces are ${GCM_NONCE_SIZE} bytes`)
  const count = Math.ceil(length / 16)
  const blocks = new Uint8Array(16 * (count + 2))
  for (let i = 0; i <= count; i++) {
    const off = 16 * (i + 1)
    blocks.set(nonce, off)
    const ctr = i + 1 // J0 has counter 1
    blocks.set([ctr >>> 24, (ctr >>> 16) & 255, (ctr >>> 8) & 255, ctr & 255], off + 12)
  }
  const out = sm4Blocks(key, blocks)
  return { h: out.subarray(0, 16), ej0: out.subarray(16, 32), stream: out.subarray(32, 32 + length) }
}

/** SM4-GCM encryption: ciphertext || 16-byte tag (RFC 8998, SP 800-38D; 12-byte nonce). */
function gcmEncrypt(key, nonce, plaintext, aad = new Uint8Array(0)) {
  key = toBytes(key); nonce = toBytes(nonce); plaintext = toBytes(plaintext); aad = toBytes(aad)
  const { h, ej0, stream } = gcmKeystream(key, nonce, plaintext.length)
  const ciphertext = new Uint8Array(plaintext.length)
  for (let i = 0; i < plaintext.length; i++) ciphertext[i] = plaintext[i] ^ stream[i]
  const s = ghash(h, aad, ciphertext)
  const tag = new Uint8Array(16)
  for (let i = 0; i < 16; i++) tag[i] = s[i] ^ ej0[i]
  return concat(ciphertext, tag)
}

/** SM4-GCM decryption of ciphertext || tag; throws if the tag does not verify. */
function gcmDecrypt(key, nonce, data, aad = new Uint8Array(0)) {
  key = toBytes(key); nonce = toBytes(nonce); data = toBytes(data); aad = toBytes(aad)
  if (data.length < GCM_TAG_SIZE) throw new Error('SM4-GCM: the data is shorter than a tag')
  const ciphertext = data.subarray(0, data.length - GCM_TAG_SIZE)
  const tag = data.subarray(data.length - GCM_TAG_SIZE)
  const { h, ej0, stream } = gcmKeystream(key, nonce, ciphertext.length)
  const s = ghash(h, aad, ciphertext)
  const expected = new Uint8Array(16)
  for (let i = 0; i < 16; i++) expected[i] = s[i] ^ ej0[i]
  if (!equal(expected, tag)) throw new Error('SM4-GCM: authentication failed')
  const plaintext = new Uint8Array(ciphertext.length)
  for (let i = 0; i < ciphertext.length; i++) plaintext[i] = ciphertext[i] ^ stream[i]
  return plaintext
}

// --- PIN proof and share wrap (keysplit/pin.py) ----------------------------------------------

const SALT_SIZE = 16
const MIN_PIN_LENGTH = 4
const MAX_PIN_LENGTH = 64
const PIN_LABEL = utf8Encode('medsign/pin/v1')
const SHARE_KEY_LABEL = utf8Encode('medsign/share-key/v1')

/** pin_proof = HMAC-SM3(salt, "medsign/pin/v1" || UTF-8(PIN)): what the phone sends instead of the PIN. */
function pinProof(pin, salt) {
  const length = Array.from(String(pin)).length // code points, as Python's len()
  if (typeof pin !== 'string' || length < MIN_PIN_LENGTH || length > MAX_PIN_LENGTH) {
    throw new RangeError(`a PIN has ${MIN_PIN_LENGTH} to ${MAX_PIN_LENGTH} characters`)
  }
  salt = toBytes(salt)
  if (salt.length !== SALT_SIZE) throw new RangeError(`the PIN salt is ${SALT_SIZE} bytes`)
  return hmacSm3(salt, concat(PIN_LABEL, utf8Encode(pin)))
}

/** K = HMAC-SM3(unwrap, "medsign/share-key/v1" || salt)[0:16]. */
function shareKey(unwrap, salt) {
  return hmacSm3(unwrap, concat(SHARE_KEY_LABEL, salt)).slice(0, SM4_KEY_SIZE)
}

/** key_id = SM3(public key bytes)[0:16]. */
function keyId(publicKey) {
  return sm3(publicKey).slice(0, 16)
}

/** nonce || SM4-GCM(K, nonce, share, aad = key_id) || tag. */
function wrapShare(share, { unwrap, salt, keyId: id, nonce = randomBytes(GCM_NONCE_SIZE) }) {
  return concat(nonce, gcmEncrypt(shareKey(unwrap, salt), nonce, share, id))
}

/** The share, or ProtocolError('pin-error') when the unwrap key does not open it. */
function unwrapShare(blob, { unwrap, salt, keyId: id }) {
  blob = toBytes(blob)
  try {
    return gcmDecrypt(shareKey(unwrap, salt), blob.subarray(0, GCM_NONCE_SIZE), blob.subarray(GCM_NONCE_SIZE), id)
  } catch (e) {
    throw errors.pinError('the share does not open with this unwrap key')
  }
}

// --- scalars, points, Z, DER -----------------------------------------------------------------

const big = (bytes) => new BigInteger(toHex(bytes) || '0', 16)
const hex64 = (value) => value.toString(16).padStart(64, '0')

function encodeScalar(value) {
  return fromHex(hex64(value))
}

function decodeScalar(bytes) {
  return big(bytes)
}

/** A uniform scalar in [1, n-1] by rejection sampling (keysplit/README.md section 2). */
function randomScalar() {
  for (;;) {
    const candidate = big(randomBytes(32))
    if (candidate.signum() > 0 && candidate.compareTo(N) < 0) return candidate
  }
}

function inverse(value) {
  return value.modInverse(N)
}

/** k * G as the 65-byte uncompressed point. */
function mulBase(k) {
  if (k.signum() <= 0 || k.compareTo(N) >= 0) throw new RangeError('scalar out of range')
  if (useBigInt) return fromHex(ec.mulBaseHex(BigInt(`0x${hex64(k)}`)))
  return fromHex(sm().sm2.getPublicKeyFromPrivateKey(hex64(k)))
}

/** Check a 65-byte point (04 || x || y, x and y < p, on the curve); ProtocolError('invalid-point'). */
function checkPoint(point, what = 'the point') {
  point = toBytes(point)
  if (point.length !== 65 || point[0] !== 4) throw errors.invalidPoint(`${what} is not an uncompressed SM2 point`)
  const x = big(point.subarray(1, 33))
  const y = big(point.subarray(33))
  const onCurve = useBigInt
    ? ec.onCurve(BigInt(`0x${toHex(point.subarray(1, 33))}`), BigInt(`0x${toHex(point.subarray(33))}`))
    : sm().sm2.verifyPublicKey(toHex(point))
  if (x.compareTo(P) >= 0 || y.compareTo(P) >= 0 || !onCurve) {
    throw errors.invalidPoint(`${what} is not a point of the SM2 group`)
  }
  return point
}

/** Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2). */
function computeZ(publicKey, id = DEFAULT_ID) {
  const ident = toBytes(id)
  const bits = ident.length * 8
  return sm3(concat([bits >> 8 & 255, bits & 255], ident, fromHex(CURVE.a), fromHex(CURVE.b),
    fromHex(CURVE.gx), fromHex(CURVE.gy), toBytes(publicKey).subarray(1)))
}

/** e = SM3(Z || M): what an SM2 signature of M by this key signs. */
function digest(publicKey, message, id = DEFAULT_ID) {
  return sm3(concat(computeZ(publicKey, id), toBytes(message)))
}

function derInteger(value) {
  let h = value.toString(16)
  if (h.length % 2) h = '0' + h
  let bytes = fromHex(h)
  if (bytes[0] & 0x80) bytes = concat([0], bytes)
  return concat([2, bytes.length], bytes)
}

/** DER SEQUENCE { INTEGER r, INTEGER s }, the shortest form. */
function encodeSignature(r, s) {
  const body = concat(derInteger(r), derInteger(s))
  return concat([0x30, body.length], body)
}

/** (r, s) of a strictly DER-encoded signature, or null. */
function decodeSignature(der) {
  der = toBytes(der)
  if (der.length < 8 || der.length > 72 || der[0] !== 0x30 || der[1] !== der.length - 2) return null
  const out = []
  let i = 2
  for (let k = 0; k < 2; k++) {
    if (der[i] !== 2) return null
    const len = der[i + 1]
    const value = der.subarray(i + 2, i + 2 + len)
    if (len === 0 || len > 33 || value.length !== len) return null
    if (value[0] & 0x80) return null
    if (value[0] === 0 && (len === 1 || !(value[1] & 0x80))) return null
    out.push(big(value))
    i += 2 + len
  }
  return i === der.length ? { r: out[0], s: out[1] } : null
}

/** Whether `signature` (DER) is an SM2 signature of the digest e under the 65-byte key. */
function verifyDigest(publicKey, e, signature) {
  const rs = decodeSignature(signature)
  if (!rs) return false
  const one = BigInteger.ONE
  const nm1 = N.subtract(one)
  if (rs.r.compareTo(one) < 0 || rs.r.compareTo(nm1) > 0 || rs.s.compareTo(one) < 0 || rs.s.compareTo(nm1) > 0) return false
  const pub = toBytes(publicKey)
  if (pub.length !== 65 || pub[0] !== 4) return false
  if (useBigInt) {
    const b = (bytes) => BigInt(`0x${toHex(bytes) || '0'}`)
    return ec.verify(b(pub.subarray(1, 33)), b(pub.subarray(33)), b(toBytes(e)), BigInt(`0x${rs.r.toString(16)}`), BigInt(`0x${rs.s.toString(16)}`))
  }
  return sm().sm2.doVerifySignature(Array.from(toBytes(e)), toHex(signature), toHex(pub), { der: true, hash: false })
}

/** Whether `signature` is an SM2-with-SM3 signature of `message` (default ID). */
function verifyMessage(publicKey, message, signature, id = DEFAULT_ID) {
  return verifyDigest(publicKey, digest(publicKey, message, id), signature)
}

// --- the device key --------------------------------------------------------------------------

/** A new SM2 key pair: { privateKey: 64 hex digits, publicKey: 65-byte point }. */
function generateKeyPair() {
  for (;;) {
    const d = randomScalar()
    if (d.compareTo(N.subtract(BigInteger.ONE)) < 0) return { privateKey: hex64(d), publicKey: mulBase(d) }
  }
}

/** SubjectPublicKeyInfo DER of an SM2 point (id-ecPublicKey, curve sm2p256v1). */
function spki(publicKey) {
  return concat(SPKI_PREFIX, checkPoint(publicKey))
}

/** SM2 signature (DER) of `message` with SM3 and the default ID: GB/T 32918.2. */
function sign(privateKey, message, { publicKey, id = DEFAULT_ID } = {}) {
  const d = new BigInteger(privateKey, 16)
  const pub = publicKey ? toBytes(publicKey) : mulBase(d)
  const e = big(digest(pub, message, id))
  const dInv = d.add(BigInteger.ONE).modInverse(N)
  for (;;) {
    const k = randomScalar()
    const x1 = big(mulBase(k).subarray(1, 33))
    const r = e.add(x1).mod(N)
    if (r.signum() === 0 || r.add(k).equals(N)) continue
    const s = dInv.multiply(k.subtract(r.multiply(d))).mod(N)
    if (s.signum() === 0) continue
    return encodeSignature(r, s)
  }
}

// --- two-party SM2, the phone's side (keysplit/phone.py) --------------------------------------

const freshNonce = () => randomBytes(16)

function checkReply(message, session, myNonce, seen = []) {
  if (!equal(message.session, session)) throw errors.outOfOrder('the message belongs to another session')
  if (!myNonce || !equal(message.reply_to, myNonce)) throw errors.replay("the message does not answer this party's latest message")
  if (equal(message.nonce, myNonce) || seen.some((n) => equal(n, message.nonce))) throw errors.replay('the message reuses a nonce')
}

/** What the phone stores: its share d1, wrapped; the joint public key P; the PIN salt. */
class PhoneShare {
  constructor({ publicKey, salt, wrapped, algorithm = 'sm2' }) {
    this.publicKey = toBytes(publicKey)
    this.salt = toBytes(salt)
    this.wrapped = toBytes(wrapped)
    this.algorithm = algorithm
  }

  get keyId() {
    return keyId(this.publicKey)
  }

  /** d1 (a BigInteger), decrypted with the unwrap key the server released. */
  open(unwrap) {
    return big(unwrapShare(this.wrapped, { unwrap: toBytes(unwrap), salt: this.salt, keyId: this.keyId }))
  }

  /** The same share wrapped for a new PIN (the PIN change of keysplit/README.md 10.3). */
  rewrap(oldUnwrap, newUnwrap) {
    return sealShare(this.open(oldUnwrap), this.publicKey, toBytes(newUnwrap), this.salt, this.algorithm)
  }

  /** As keysplit.phone.PhoneShare.to_json: hex members. */
  toJSON() {
    return { public_key: toHex(this.publicKey), salt: toHex(this.salt), wrapped: toHex(this.wrapped), algorithm: this.algorithm }
  }

  static fromJSON(data) {
    const value = typeof data === 'string' ? JSON.parse(data) : data
    return new PhoneShare({
      publicKey: fromHex(value.public_key), salt: fromHex(value.salt), wrapped: fromHex(value.wrapped), algorithm: value.algorithm || 'sm2',
    })
  }
}

function sealShare(secret, publicKey, unwrap, salt, algorithm = 'sm2') {
  const size = Math.max(32, Math.ceil(secret.bitLength() / 8))
  const raw = fromHex(secret.toString(16).padStart(size * 2, '0'))
  const wrapped = wrapShare(raw, { unwrap, salt, keyId: keyId(publicKey) })
  return new PhoneShare({ publicKey, salt, wrapped, algorithm })
}

/** keygen.offer -> keygen.commit -> keygen.result -> PhoneShare. */
class PhoneKeygen {
  constructor(pin, { salt = randomBytes(SALT_SIZE), random = randomScalar } = {}) {
    this._salt = toBytes(salt)
    this._proof = pinProof(pin, this._salt)
    this._random = random
    this._d1 = null
    this._session = null
    this._nonce = null
  }

  commit(offer) {
    if (this._session) throw errors.outOfOrder('this keygen already started')
    this._d1 = this._random()
    const p1 = mulBase(inverse(this._d1)) // d1^-1 * G
    this._session = offer.session
    this._nonce = freshNonce()
    return { type: 'keygen.commit', session: offer.session, nonce: this._nonce, reply_to: offer.nonce, p1, pin_proof: this._proof }
  }

  finish(result) {
    if (!this._d1 || !this._session) throw errors.outOfOrder('keygen.result before keygen.commit')
    checkReply(result, this._session, this._nonce)
    checkPoint(result.public_key, 'the joint public key')
    const share = sealShare(this._d1, result.public_key, result.unwrap, this._salt)
    this._d1 = null
    return share
  }
}

/**
 * cosign.offer -> cosign.commit -> cosign.response -> cosign.result (or, rarely, another
 * commit) -> cosign.done -> the DER signatures.  Give the PIN when the offer requires one; for
 * an authorized PIN-less (auto-sign) session give `unwrap`, the key kept from a PIN check.
 */
class PhoneCosigner {
  constructor(share, { pin, unwrap, random = randomScalar, shares = [] } = {}) {
    if (share.algorithm !== 'sm2') throw new TypeError('an SM2 co-signer needs an SM2 share')
    this._share = share
    this._fallbacks = shares // older wraps of the same share (kept during a PIN change)
    this._proof = pin !== undefined && pin !== null ? pinProof(pin, share.salt) : null
    this._unwrap = unwrap ? toBytes(unwrap) : null
    this._random = random
    this._offer = null
    this._k1 = []
    this._nonce = null
    this._signatures = null
    this.openedWith = null // the share that opened (for the caller's PIN-change bookkeeping)
  }

  /** Start; `expectedDigests` are the e values the phone computed itself from what it showed. */
  commit(offer, expectedDigests) {
    if (this._offer) throw errors.outOfOrder('this co-sign already started')
    if (!equal(offer.public_key, this._share.publicKey)) throw errors.malformed('the offer is for another key')
    if (expectedDigests) {
      const same = expectedDigests.length === offer.digests.length && expectedDigests.every((d, i) => equal(d, offer.digests[i]))
      if (!same) throw errors.digestMismatch("the offer's digests are not the documents shown")
    }
    if (offer.require_pin && !this._proof) throw errors.malformed('this co-sign requires the PIN')
    this._offer = offer
    return this._newCommit(offer.nonce)
  }

  _newCommit(replyTo) {
    const offer = this._offer
    this._k1 = offer.digests.map(() => this._random())
    const q1 = this._k1.map((k) => mulBase(k))
    this._nonce = freshNonce()
    const commit = { type: 'cosign.commit', session: offer.session, nonce: this._nonce, reply_to: replyTo, digests: offer.digests, q1 }
    if (offer.require_pin) commit.pin_proof = this._proof
    return commit
  }

  /** The unwrap key of this session: the response's, else the one kept for auto-sign. */
  unwrapKey(response) {
    const key = response.unwrap || this._unwrap
    if (!key) throw errors.noUnwrapKey('no unwrap key: a PIN-less session needs the cached one')
    return key
  }

  _open(key) {
    let first
    for (const share of [this._share, ...this._fallbacks]) {
      try {
        const d1 = share.open(key)
        this.openedWith = share
        return d1
      } catch (e) {
        first = first || e
      }
    }
    throw first
  }

  /** The cosign.result, or (rarely) a new cosign.commit when some s was 0 or n - r. */
  finish(response) {
    const offer = this._offer
    if (!offer || this._k1.length === 0) throw errors.outOfOrder('cosign.response before cosign.commit')
    checkReply(response, offer.session, this._nonce)
    const count = offer.digests.length
    if (response.r.length !== count || response.s2.length !== count || response.s3.length !== count) {
      throw errors.malformed('one (r, s2, s3) per digest is required')
    }
    const d1 = this._open(this.unwrapKey(response))
    const signatures = []
    for (let i = 0; i < count; i++) {
      const [r, s2, s3] = [response.r[i], response.s2[i], response.s3[i]].map((raw) => {
        const v = big(raw)
        if (v.signum() <= 0 || v.compareTo(N) >= 0) throw errors.invalidScalar('a scalar from the server is out of range')
        return v
      })
      const s = d1.multiply(this._k1[i]).multiply(s2).add(d1.multiply(s3)).subtract(r).mod(N)
      if (s.signum() === 0 || s.add(r).mod(N).signum() === 0) return this._newCommit(response.nonce)
      const signature = encodeSignature(r, s)
      if (!verifyDigest(this._share.publicKey, offer.digests[i], signature)) {
        throw errors.signatureRejected("the server's contribution does not make a valid signature")
      }
      signatures.push(signature)
    }
    this._k1 = []
    this._signatures = signatures
    this._nonce = freshNonce()
    return { type: 'cosign.result', session: offer.session, nonce: this._nonce, reply_to: response.nonce, signatures }
  }

  /** The signatures, once the server confirmed that it accepted them. */
  close(done) {
    if (!this._signatures || !this._offer) throw errors.outOfOrder('cosign.done before cosign.result')
    checkReply(done, this._offer.session, this._nonce)
    return this._signatures
  }
}

module.exports = {
  setBackend,
  CURVE,
  DEFAULT_ID,
  SALT_SIZE,
  GCM_NONCE_SIZE,
  sm3,
  hmacSm3,
  gcmEncrypt,
  gcmDecrypt,
  pinProof,
  shareKey,
  keyId,
  wrapShare,
  unwrapShare,
  randomScalar,
  encodeScalar,
  decodeScalar,
  mulBase,
  checkPoint,
  computeZ,
  digest,
  encodeSignature,
  decodeSignature,
  verifyDigest,
  verifyMessage,
  generateKeyPair,
  spki,
  sign,
  PhoneShare,
  PhoneKeygen,
  PhoneCosigner,
  sealShare,
}
