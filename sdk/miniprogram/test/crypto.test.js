'use strict'
// Unit tests of src/crypto.js against values produced by the server's own code (signcore,
// keysplit) and by published standards.  No server needed.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const fs = require('node:fs')

const crypto = require('../src/crypto')
const messages = require('../src/messages')
const { fromHex, toHex, base64url, utf8Encode } = require('../src/bytes')
const random = require('../src/random')

const h = fromHex
const WORKED = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'worked-example.json'), 'utf8'))
const V = WORKED.values

/** A random source that hands out the given byte strings (for the 16/12-byte requests) in order. */
function scripted(queue) {
  return (n) => {
    const next = queue.shift()
    if (!next || next.length !== n) throw new Error(`scripted random: asked for ${n} bytes, next is ${next && next.length}`)
    return next
  }
}

test.afterEach(() => random.setRandomSource(null))

// --- SM3 / HMAC-SM3 ---------------------------------------------------------------------------

test('SM3: GB/T 32905-2016 Annex A examples', () => {
  // tests/vectors/sm2-sm3.json (GB/T 32905-2016 A.1 and A.2, checked against gmssl and OpenSSL)
  assert.equal(toHex(crypto.sm3(utf8Encode('abc'))), '66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0')
  assert.equal(toHex(crypto.sm3(utf8Encode('abcd'.repeat(16)))), 'debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732')
})

test('HMAC-SM3 matches signcore.hashes.hmac_sm3 (short and >64-byte keys)', () => {
  // produced with: .venv/bin/python -c "from signcore.hashes import hmac_sm3; print(hmac_sm3(b'key', b'The quick brown fox jumps over the lazy dog').hex(), hmac_sm3(bytes(range(100)), b'data').hex())"
  assert.equal(toHex(crypto.hmacSm3(utf8Encode('key'), utf8Encode('The quick brown fox jumps over the lazy dog'))),
    'bd4a34077888162b210645b8ebf74b9af357303789357a27c7fc457244ebd398')
  const longKey = Uint8Array.from({ length: 100 }, (_, i) => i)
  assert.equal(toHex(crypto.hmacSm3(longKey, utf8Encode('data'))), 'd6f2c5f50e43cebf703c4c0975effa77c05d14784904c90113bc20de92687ddf')
})

// --- SM4-GCM ----------------------------------------------------------------------------------

test('SM4-GCM: RFC 8998 Appendix A.1', () => {
  // tests/vectors/sm4.json (RFC 8998 A.1, checked there against two implementations)
  const key = h('0123456789abcdeffedcba9876543210')
  const iv = h('00001234567800000000abcd')
  const aad = h('feedfacedeadbeeffeedfacedeadbeefabaddad2')
  const pt = h('aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccddddddddddddddddeeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa')
  const expected = '17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d'
    + '83de3541e4c2b58177e065a9bf7b62ec'
  assert.equal(toHex(crypto.gcmEncrypt(key, iv, pt, aad)), expected)
  assert.equal(toHex(crypto.gcmDecrypt(key, iv, h(expected), aad)), toHex(pt))
})

test('SM4-GCM matches the server (signcore.sm4.gcm_encrypt): partial blocks, empty text, no AAD', () => {
  // produced with: from signcore import sm4; key = bytes(range(16)); nonce = bytes.fromhex("cafebabefacedbaddecaf888")
  //   sm4.gcm_encrypt(key, nonce, bytes(range(37)), b"medsign aad 20 bytes").hex()
  //   sm4.gcm_encrypt(key, nonce, b"", b"medsign aad 20 bytes").hex()
  //   sm4.gcm_encrypt(key, nonce, bytes(range(64)), b"").hex()
  const key = Uint8Array.from({ length: 16 }, (_, i) => i)
  const nonce = h('cafebabefacedbaddecaf888')
  const aad = utf8Encode('medsign aad 20 bytes')
  const range = (n) => Uint8Array.from({ length: n }, (_, i) => i)
  const cases = [
    [range(37), aad, '579e4d85ab0ac81671dafe5814c317e924b51ad3aecbc251e09d032b99c63ceffffd26f2c62c5c55b97b0f3509331f051d23748dc6'],
    [new Uint8Array(0), aad, '4df3fcc0f6844a19dbfc1c77d3807713'],
    [range(64), new Uint8Array(0), '579e4d85ab0ac81671dafe5814c317e924b51ad3aecbc251e09d032b99c63ceffffd26f2c6cccbdac09d3b24b08771d9880e5339b0b0296cef504af6e43cfac39065639917e76fd69a9b42f92cb39771'],
  ]
  for (const [pt, a, expected] of cases) {
    assert.equal(toHex(crypto.gcmEncrypt(key, nonce, pt, a)), expected)
    assert.equal(toHex(crypto.gcmDecrypt(key, nonce, h(expected), a)), toHex(pt))
  }
})

test('SM4-GCM refuses a changed ciphertext, tag, AAD or nonce', () => {
  const key = Uint8Array.from({ length: 16 }, (_, i) => i * 3)
  const nonce = new Uint8Array(12).fill(9)
  const sealed = crypto.gcmEncrypt(key, nonce, utf8Encode('d1 share'), utf8Encode('key id'))
  for (let i = 0; i < sealed.length; i += 5) {
    const bad = sealed.slice()
    bad[i] ^= 1
    assert.throws(() => crypto.gcmDecrypt(key, nonce, bad, utf8Encode('key id')), /authentication failed/)
  }
  assert.throws(() => crypto.gcmDecrypt(key, nonce, sealed, utf8Encode('key ie')), /authentication failed/)
  assert.throws(() => crypto.gcmDecrypt(key, new Uint8Array(12), sealed, utf8Encode('key id')), /authentication failed/)
  assert.throws(() => crypto.gcmEncrypt(key, new Uint8Array(16), new Uint8Array(1)), /nonces are 12 bytes/)
})

// --- PIN proof and share wrap (keysplit/pin.py) ------------------------------------------------

test('PIN proof matches keysplit.pin.pin_proof, non-ASCII PINs included', () => {
  // produced with: from keysplit import pin; salt = bytes.fromhex("00112233445566778899aabbccddeeff")
  //   pin.pin_proof("密码1234", salt).hex(); pin.pin_proof("12\U0001F600x", salt).hex()
  const salt = h('00112233445566778899aabbccddeeff')
  assert.equal(toHex(crypto.pinProof('密码1234', salt)), 'b64de8485b219f285550ca91f8da70c86994879dd22c033d97a7cdc8b6cbbe0f')
  // 4 code points (the emoji is one, as for Python's len), not 5 UTF-16 units
  assert.equal(toHex(crypto.pinProof('12\u{1F600}x', salt)), '378b687a461ee90637b7948b433eba1fb0a3b5d2509732938f1515273c041465')
  assert.throws(() => crypto.pinProof('123', salt), RangeError)
  assert.throws(() => crypto.pinProof('1'.repeat(65), salt), RangeError)
  assert.throws(() => crypto.pinProof('123456', new Uint8Array(15)), RangeError)
})

test('share wrap: opens keysplit.pin.wrap_share output and re-creates it byte for byte', () => {
  // produced with: from keysplit import pin; from signcore.hashes import sm3
  //   salt = bytes.fromhex("00112233445566778899aabbccddeeff"); unwrap = bytes(range(32)); key_id = sm3(b"some public key")[:16]
  //   pin.wrap_share(bytes.fromhex("9042...5d39"), unwrap=unwrap, salt=salt, key_id=key_id).hex()
  const salt = h('00112233445566778899aabbccddeeff')
  const unwrap = Uint8Array.from({ length: 32 }, (_, i) => i)
  const keyId = crypto.sm3(utf8Encode('some public key')).slice(0, 16)
  assert.equal(toHex(keyId), '44de9d9b0bcc5736083cb842a7fba5cf')
  const share = h('90424504ca3af4defca466ff01d33720c9ac61e56f8ac3c79e11da8471595d39')
  const wrapped = h('00a0bfc0d6b4eae2e3f096a5a7350907985a81c57e53f50cdc3245d4e2f6b504fbea68b40901f843272888a22b68e4cc6b4749423cab03b34578d433')
  assert.equal(toHex(crypto.unwrapShare(wrapped, { unwrap, salt, keyId })), toHex(share))
  const again = crypto.wrapShare(share, { unwrap, salt, keyId, nonce: wrapped.slice(0, 12) })
  assert.equal(toHex(again), toHex(wrapped))
  const wrong = unwrap.slice()
  wrong[0] ^= 1
  assert.throws(() => crypto.unwrapShare(wrapped, { unwrap: wrong, salt, keyId }), (e) => e.code === 'pin-error')
})

// --- the worked example of keysplit/README.md section 13 --------------------------------------

test('worked example: pin proof, K, key id, d1, P1, Q1, Z, e, s and DER', () => {
  const salt = h(V.salt)
  const unwrap = h(V['unwrap (from keygen.result)'])
  const msgs = Object.fromEntries(WORKED.messages.map((m) => [m.type, JSON.parse(m.wire)]))
  const publicKey = base64url.decode(msgs['keygen.result'].public_key)
  assert.equal(toHex(crypto.pinProof('246810', salt)), V["pin_proof = HMAC-SM3(salt, 'medsign/pin/v1' || PIN)"])
  assert.equal(toHex(crypto.shareKey(unwrap, salt)), V["K = HMAC-SM3(unwrap, 'medsign/share-key/v1' || salt)[:16]"])
  assert.equal(toHex(crypto.keyId(publicKey)), V['key_id = SM3(public_key)[:16]'])
  const share = new crypto.PhoneShare({ publicKey, salt, wrapped: h(V['wrapped = nonce || SM4-GCM(K, d1, aad=key_id) || tag']) })
  const d1 = share.open(unwrap)
  assert.equal(toHex(crypto.encodeScalar(d1)), V.d1)
  assert.equal(base64url.encode(crypto.mulBase(d1.modInverse(crypto.decodeScalar(h(crypto.CURVE.n))))), msgs['keygen.commit'].p1)
  assert.equal(toHex(crypto.computeZ(publicKey)), V['Z (ID 1234567812345678)'])
  for (const i of [0, 1]) {
    const e = crypto.digest(publicKey, h(V[`M[${i}] (UTF-8)`]))
    assert.equal(toHex(e), V[`e[${i}] = SM3(Z || M[${i}])`])
    const k1 = crypto.decodeScalar(h(V[`k1[${i}]`]))
    assert.equal(base64url.encode(crypto.mulBase(k1)), msgs['cosign.commit'].q1[i])
    const sig = h(V[`signature[${i}] (DER)`])
    assert.ok(crypto.verifyDigest(publicKey, e, sig))
    const rs = crypto.decodeSignature(sig)
    assert.equal(toHex(crypto.encodeScalar(rs.s)), V[`s[${i}] = d1*k1[${i}]*s2[${i}] + d1*s3[${i}] - r[${i}]`])
    assert.equal(toHex(crypto.encodeSignature(rs.r, rs.s)), toHex(sig))
  }
})

test('worked example: the JS phone replays the whole exchange byte for byte', () => {
  const wire = Object.fromEntries(WORKED.messages.map((m) => [m.type, m.wire]))
  const field = (type, name) => base64url.decode(JSON.parse(wire[type])[name])
  const wrapped = h(V['wrapped = nonce || SM4-GCM(K, d1, aad=key_id) || tag'])
  // co-keygen: d1 and the salt of the run; nonces and the GCM nonce scripted to the run's
  random.setRandomSource(scripted([field('keygen.commit', 'nonce'), wrapped.slice(0, 12)]))
  const keygen = new crypto.PhoneKeygen('246810', { salt: h(V.salt), random: () => crypto.decodeScalar(h(V.d1)) })
  const commit = keygen.commit(messages.decode(wire['keygen.offer'], 'keygen.offer'))
  assert.equal(messages.encodeText(commit), wire['keygen.commit'])
  const share = keygen.finish(messages.decode(wire['keygen.result'], 'keygen.result'))
  assert.equal(toHex(share.wrapped), toHex(wrapped))
  // co-sign of two digests
  const k1 = [h(V['k1[0]']), h(V['k1[1]'])]
  random.setRandomSource(scripted([field('cosign.commit', 'nonce'), field('cosign.result', 'nonce')]))
  const cosigner = new crypto.PhoneCosigner(share, { pin: '246810', random: () => crypto.decodeScalar(k1.shift()) })
  const digests = [h(V['e[0] = SM3(Z || M[0])']), h(V['e[1] = SM3(Z || M[1])'])]
  const ccommit = cosigner.commit(messages.decode(wire['cosign.offer'], 'cosign.offer'), digests)
  assert.equal(messages.encodeText(ccommit), wire['cosign.commit'])
  const result = cosigner.finish(messages.decode(wire['cosign.response'], 'cosign.response'))
  assert.equal(messages.encodeText(result), wire['cosign.result'])
  const signatures = cosigner.close(messages.decode(wire['cosign.done'], 'cosign.done'))
  assert.deepEqual(signatures.map(toHex), [V['signature[0] (DER)'], V['signature[1] (DER)']])
})

test('the phone refuses what keysplit/phone.py refuses', () => {
  const wire = Object.fromEntries(WORKED.messages.map((m) => [m.type, m.wire]))
  const share = new crypto.PhoneShare({
    publicKey: base64url.decode(JSON.parse(wire['keygen.result']).public_key),
    salt: h(V.salt),
    wrapped: h(V['wrapped = nonce || SM4-GCM(K, d1, aad=key_id) || tag']),
  })
  const offer = messages.decode(wire['cosign.offer'], 'cosign.offer')
  const response = messages.decode(wire['cosign.response'], 'cosign.response')
  const code = (c) => (e) => e.code === c
  // no PIN for a PIN session; another key; digests other than the documents shown
  assert.throws(() => new crypto.PhoneCosigner(share).commit(offer), code('malformed-message'))
  assert.throws(() => new crypto.PhoneCosigner(share, { pin: '246810' }).commit({ ...offer, public_key: crypto.mulBase(crypto.randomScalar()) }), code('malformed-message'))
  assert.throws(() => new crypto.PhoneCosigner(share, { pin: '246810' }).commit(offer, [offer.digests[1], offer.digests[0]]), code('digest-mismatch'))
  // a response that does not answer our commit (our nonce is fresh, not the run's)
  const c1 = new crypto.PhoneCosigner(share, { pin: '246810' })
  c1.commit(offer)
  assert.throws(() => c1.finish(response), code('replay'))
  assert.throws(() => c1.finish({ ...response, session: new Uint8Array(16) }), code('out-of-order'))
  // out of range scalar, wrong unwrap key, wrong server contribution
  const answer = (cosigner, changes) => cosigner.finish({ ...response, reply_to: cosigner._nonce, ...changes })
  const fresh = () => { const c = new crypto.PhoneCosigner(share, { pin: '246810' }); c.commit(offer); return c }
  assert.throws(() => answer(fresh(), { r: [new Uint8Array(32), response.r[1]] }), code('invalid-scalar'))
  assert.throws(() => answer(fresh(), { r: [h(crypto.CURVE.n), response.r[1]] }), code('invalid-scalar'))
  assert.throws(() => answer(fresh(), { unwrap: new Uint8Array(32) }), code('pin-error'))
  assert.throws(() => answer(fresh(), {}), code('signature-rejected')) // our k1 are not the run's
  assert.throws(() => answer(fresh(), { r: [response.r[0]] }), code('malformed-message'))
  // a PIN-less session without a cached unwrap key
  const auto = new crypto.PhoneCosigner(share, {})
  auto.commit({ ...offer, require_pin: false })
  assert.throws(() => answer(auto, { unwrap: undefined }), code('no-unwrap-key'))
  // keygen.result with an invalid point
  const keygen = new crypto.PhoneKeygen('246810')
  const kc = keygen.commit(messages.decode(wire['keygen.offer'], 'keygen.offer'))
  const result = { ...messages.decode(wire['keygen.result'], 'keygen.result'), reply_to: kc.nonce }
  const offCurve = result.public_key.slice()
  offCurve[64] ^= 1
  assert.throws(() => keygen.finish({ ...result, public_key: offCurve }), code('invalid-point'))
})

// --- points, DER, device key -----------------------------------------------------------------

test('point validation: prefix, coordinates below p, on the curve', () => {
  const good = crypto.mulBase(crypto.randomScalar())
  assert.equal(crypto.checkPoint(good), good)
  const code = (e) => e.code === 'invalid-point'
  assert.throws(() => crypto.checkPoint(good.slice(0, 64)), code)
  const compressed = good.slice()
  compressed[0] = 2
  assert.throws(() => crypto.checkPoint(compressed), code)
  // (0, sqrt(b)) is on the curve; (p, sqrt(b)) is the same point with a non-canonical x that
  // sm-crypto's own check would take (it computes mod p): refused
  const y = h('fd4511e81736a60f07e88a83d6cf5a167fae6d1a9c9330e76e232e00f5cdc154') // b^((p+1)/4) mod p
  const zeroX = new Uint8Array(65)
  zeroX[0] = 4
  zeroX.set(y, 33)
  assert.equal(crypto.checkPoint(zeroX), zeroX)
  const pX = zeroX.slice()
  pX.set(h(crypto.CURVE.p), 1)
  assert.ok(require('sm-crypto').sm2.verifyPublicKey(toHex(pX)))
  assert.throws(() => crypto.checkPoint(pX), code)
  const zero = new Uint8Array(65)
  zero[0] = 4
  assert.throws(() => crypto.checkPoint(zero), code)
})

test('DER signatures: shortest form, strict decoding', () => {
  const one = crypto.decodeScalar(h('01'))
  const high = crypto.decodeScalar(h('80'.padEnd(64, '0')))
  assert.equal(toHex(crypto.encodeSignature(one, one)), '3006020101020101')
  assert.equal(toHex(crypto.encodeSignature(high, one)).slice(0, 12), '302602210080')
  assert.equal(crypto.decodeSignature(h('300702020001020101')), null) // a needless leading zero
  assert.equal(crypto.decodeSignature(h('3006020181020101')), null) // negative
  assert.equal(crypto.decodeSignature(h('300602010102010100')), null) // trailing byte
  assert.deepEqual(crypto.decodeSignature(h('3006020101020101')).r.toString(), '1')
})

test('SM2 sign/verify: GB/T 32918 example key; the server signature verifies in JS, ours is checked by verify', () => {
  // tests/vectors/sm2-sm3.json (GB/T 32918.5 Annex A): e for "message digest" under the example key
  const pub = h('04' + '09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020' + 'ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13')
  assert.equal(toHex(crypto.digest(pub, utf8Encode('message digest'))), 'f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640')
  const r = crypto.decodeScalar(h('f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3'))
  const s = crypto.decodeScalar(h('b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa'))
  assert.ok(crypto.verifyMessage(pub, utf8Encode('message digest'), crypto.encodeSignature(r, s)))
  assert.ok(!crypto.verifyMessage(pub, utf8Encode('message digesT'), crypto.encodeSignature(r, s)))
  assert.equal(toHex(crypto.mulBase(crypto.decodeScalar(h('3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8')))), toHex(pub))

  // produced with: from signcore.sm2 import SM2PrivateKey; k = SM2PrivateKey.generate()
  //   k.public_key().to_der().hex(); k.sign(b"medsign device request").hex()   (a device signature made by the server's code)
  const spki = h('3059301306072a8648ce3d020106082a811ccf5501822d03420004419dea00de2af2bd4e11c657e312c246e6de43bc4cb5e1353895b0b0ad8700ccc8ba4e785748a83dae5a18dd63c55a8a875e25ebb2503b3f18b7923a0d5ab45c')
  const sig = h('3045022100ddca9a8c24e88490bdd8d8ea74b0e2f73b1da4f2e02882a6e2cf4553d483152802201fcbd5391bfe50f6bd16fc48a7dee37ce13b26acd026bb6bd702dda0534f3f92')
  const point = spki.slice(26)
  assert.equal(toHex(crypto.spki(point)), toHex(spki))
  assert.ok(crypto.verifyMessage(point, utf8Encode('medsign device request'), sig))

  // our own signatures (random k): verify, and fail for another message or key
  const key = crypto.generateKeyPair()
  for (let i = 0; i < 5; i++) {
    const msg = utf8Encode(`request ${i}`)
    const signature = crypto.sign(key.privateKey, msg, { publicKey: key.publicKey })
    assert.ok(signature.length <= 72 && signature[0] === 0x30)
    assert.ok(crypto.verifyMessage(key.publicKey, msg, signature))
    assert.ok(!crypto.verifyMessage(key.publicKey, utf8Encode(`request ${i + 1}`), signature))
    assert.ok(!crypto.verifyMessage(point, msg, signature))
  }
})

test('random scalars are in [1, n-1] and the share round-trips through rewrap', () => {
  const n = crypto.decodeScalar(h(crypto.CURVE.n))
  for (let i = 0; i < 50; i++) {
    const k = crypto.randomScalar()
    assert.ok(k.signum() > 0 && k.compareTo(n) < 0)
  }
  const d1 = crypto.randomScalar()
  const pub = crypto.mulBase(crypto.randomScalar())
  const salt = random.randomBytes(16)
  const [u1, u2] = [random.randomBytes(32), random.randomBytes(32)]
  const share = crypto.sealShare(d1, pub, u1, salt)
  assert.equal(share.wrapped.length, 60)
  const rewrapped = share.rewrap(u1, u2)
  assert.equal(rewrapped.open(u2).toString(16), d1.toString(16))
  assert.throws(() => rewrapped.open(u1), (e) => e.code === 'pin-error')
  const restored = crypto.PhoneShare.fromJSON(JSON.stringify(rewrapped.toJSON()))
  assert.equal(restored.open(u2).toString(16), d1.toString(16))
})

// --- the phone against an in-test server that knows every secret ------------------------------

const N_ = crypto.decodeScalar(h(crypto.CURVE.n))

/**
 * A co-sign round as keysplit/sm2.py computes it; the test knows k1, so k3*Q1 + k2*G is
 * (k3*k1 + k2)*G.  `zero: { index, d1 }` crafts s3 so that the phone's s is 0 for that digest.
 */
function respond({ commit, d2, k1, digests, unwrap, zero }) {
  const out = { r: [], s2: [], s3: [] }
  digests.forEach((e, i) => {
    const k2 = crypto.randomScalar()
    const k3 = crypto.randomScalar()
    const x1 = crypto.decodeScalar(crypto.mulBase(k3.multiply(k1[i]).add(k2).mod(N_)).slice(1, 33))
    const r = crypto.decodeScalar(e).add(x1).mod(N_)
    const s2 = d2.multiply(k3).mod(N_)
    let s3 = d2.multiply(r.add(k2)).mod(N_)
    if (zero && zero.index === i) s3 = r.multiply(zero.d1.modInverse(N_)).subtract(k1[i].multiply(s2)).mod(N_)
    out.r.push(crypto.encodeScalar(r))
    out.s2.push(crypto.encodeScalar(s2))
    out.s3.push(crypto.encodeScalar(s3))
  })
  return { type: 'cosign.response', session: commit.session, nonce: random.randomBytes(16), reply_to: commit.nonce, ...out, ...(unwrap ? { unwrap } : {}) }
}

function splitKey() {
  const d1 = crypto.randomScalar()
  const d2 = crypto.randomScalar()
  const d = d1.multiply(d2).mod(N_).modInverse(N_).subtract(crypto.decodeScalar(h('01'))).mod(N_)
  return { d1, d2, publicKey: crypto.mulBase(d) }
}

function recordingRandom() {
  const drawn = []
  return { drawn, draw: () => { const k = crypto.randomScalar(); drawn.push(k); return k } }
}

test('after a PIN change the old wrap still opens with the old unwrap key (kept as a fallback)', () => {
  const { d1, d2, publicKey } = splitKey()
  const salt = random.randomBytes(16)
  const [u1, u2] = [random.randomBytes(32), random.randomBytes(32)]
  const oldShare = crypto.sealShare(d1, publicKey, u1, salt)
  const newShare = oldShare.rewrap(u1, u2)
  const digests = [crypto.digest(publicKey, utf8Encode('处方 1')), crypto.digest(publicKey, utf8Encode('处方 2'))]
  const offer = { type: 'cosign.offer', session: random.randomBytes(16), nonce: random.randomBytes(16), public_key: publicKey, digests, require_pin: true }
  for (const [unwrap, expected] of [[u1, oldShare], [u2, newShare]]) {
    const rng = recordingRandom()
    const cosigner = new crypto.PhoneCosigner(newShare, { pin: '2468', shares: [oldShare], random: rng.draw })
    const commit = cosigner.commit(offer, digests)
    assert.equal(toHex(commit.pin_proof), toHex(crypto.pinProof('2468', salt)))
    const result = cosigner.finish(respond({ commit, d2, k1: rng.drawn, digests, unwrap }))
    assert.equal(result.type, 'cosign.result')
    assert.equal(cosigner.openedWith, expected)
    result.signatures.forEach((sig, i) => assert.ok(crypto.verifyDigest(publicKey, digests[i], sig)))
  }
  // without the fallback the old unwrap key does not open the new wrap
  const rng = recordingRandom()
  const alone = new crypto.PhoneCosigner(newShare, { pin: '2468', random: rng.draw })
  const commit = alone.commit(offer)
  assert.throws(() => alone.finish(respond({ commit, d2, k1: rng.drawn, digests, unwrap: u1 })), (e) => e.code === 'pin-error')
})

test('s = 0 makes the phone send a new commit with fresh k1 (the retry of keysplit/README.md section 5)', () => {
  const { d1, d2, publicKey } = splitKey()
  const unwrap = random.randomBytes(32)
  const share = crypto.sealShare(d1, publicKey, unwrap, random.randomBytes(16))
  const digests = [crypto.digest(publicKey, utf8Encode('a')), crypto.digest(publicKey, utf8Encode('b'))]
  const offer = { type: 'cosign.offer', session: random.randomBytes(16), nonce: random.randomBytes(16), public_key: publicKey, digests, require_pin: false }
  const rng = recordingRandom()
  const cosigner = new crypto.PhoneCosigner(share, { unwrap, random: rng.draw }) // an auto-sign window
  const first = cosigner.commit(offer)
  assert.equal(first.pin_proof, undefined) // a PIN-less session carries no proof
  const crafted = respond({ commit: first, d2, k1: rng.drawn.slice(), digests, zero: { index: 1, d1 } })
  const again = cosigner.finish(crafted)
  assert.equal(again.type, 'cosign.commit')
  assert.equal(toHex(again.reply_to), toHex(crafted.nonce))
  assert.equal(rng.drawn.length, 4) // a fresh k1 for every digest
  assert.notEqual(toHex(again.q1[0]), toHex(first.q1[0]))
  const result = cosigner.finish(respond({ commit: again, d2, k1: rng.drawn.slice(2), digests }))
  assert.equal(result.type, 'cosign.result')
  result.signatures.forEach((sig, i) => assert.ok(crypto.verifyDigest(publicKey, digests[i], sig)))
})

test('the BigInt EC backend and sm-crypto agree (k*G, verification, point checks)', () => {
  try {
    const wire = Object.fromEntries(WORKED.messages.map((m) => [m.type, JSON.parse(m.wire)]))
    const pub = base64url.decode(wire['keygen.result'].public_key)
    const e0 = h(V['e[0] = SM3(Z || M[0])'])
    const sig0 = h(V['signature[0] (DER)'])
    const verdicts = {}
    for (const backend of ['bigint', 'sm-crypto']) {
      crypto.setBackend(backend)
      const out = []
      // scalars at the edges and at random
      const n1 = crypto.decodeScalar(h(crypto.CURVE.n)).subtract(crypto.decodeScalar(h('01')))
      for (const k of [crypto.decodeScalar(h('01')), crypto.decodeScalar(h('0f')), crypto.decodeScalar(h('10')), n1]) out.push(toHex(crypto.mulBase(k)))
      out.push(crypto.verifyDigest(pub, e0, sig0))
      const tampered = sig0.slice()
      tampered[10] ^= 1
      out.push(crypto.verifyDigest(pub, e0, tampered))
      out.push(crypto.verifyDigest(pub, h(V['e[1] = SM3(Z || M[1])']), sig0))
      out.push(crypto.verifyDigest(crypto.mulBase(crypto.decodeScalar(h('02'))), e0, sig0))
      const offCurve = pub.slice()
      offCurve[40] ^= 4
      out.push(crypto.verifyDigest(offCurve, e0, sig0))
      out.push(toHex(crypto.checkPoint(pub)))
      assert.throws(() => crypto.checkPoint(offCurve), (err) => err.code === 'invalid-point')
      verdicts[backend] = out
    }
    assert.deepEqual(verdicts.bigint, verdicts['sm-crypto'])
    assert.deepEqual(verdicts.bigint.slice(4, 9), [true, false, false, false, false])
    assert.equal(verdicts.bigint[3].slice(0, 66), `04${crypto.CURVE.gx}`) // (n-1)*G = -G
    // random scalars and signatures made by one backend, checked by the other
    for (let i = 0; i < 30; i++) {
      const k = crypto.randomScalar()
      crypto.setBackend('bigint')
      const a = crypto.mulBase(k)
      const key = crypto.generateKeyPair()
      const signature = crypto.sign(key.privateKey, utf8Encode(`m${i}`), { publicKey: key.publicKey })
      crypto.setBackend('sm-crypto')
      assert.equal(toHex(crypto.mulBase(k)), toHex(a))
      assert.ok(crypto.verifyMessage(key.publicKey, utf8Encode(`m${i}`), signature))
    }
  } finally {
    crypto.setBackend('bigint')
  }
})
