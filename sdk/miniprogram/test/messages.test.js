'use strict'
// src/messages.js against keysplit/messages.py: the same bytes out, the same refusals in.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const fs = require('node:fs')

const messages = require('../src/messages')
const { base64url, toHex, utf8Encode } = require('../src/bytes')

const WORKED = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'worked-example.json'), 'utf8'))
const range = (from, to) => Uint8Array.from({ length: to - from }, (_, i) => from + i)
const fill = (n, v) => new Uint8Array(n).fill(v)
const malformed = (e) => e.code === 'malformed-message' && e.status === 0

test('encode writes what keysplit.messages writes (sorted compact JSON, unpadded base64url)', () => {
  // produced with: from keysplit import messages as m; sess = bytes(range(16)); n1 = bytes(range(16, 32)); n2 = bytes(range(32, 48))
  //   m.CosignCommit(session=sess, nonce=n2, reply_to=n1, digests=(bytes(32), b"\xff" * 32),
  //                  q1=(b"\x04" + bytes(64), b"\x04" + b"\x01" * 64), pin_proof=b"\x07" * 32).encode()
  const commit = {
    type: 'cosign.commit', session: range(0, 16), nonce: range(32, 48), reply_to: range(16, 32),
    digests: [fill(32, 0), fill(32, 255)], q1: [Uint8Array.from([4, ...fill(64, 0)]), Uint8Array.from([4, ...fill(64, 1)])], pin_proof: fill(32, 7),
  }
  assert.equal(messages.encodeText(commit),
    '{"digests":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","__________________________________________8"],"nonce":"ICEiIyQlJicoKSorLC0uLw","pin_proof":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc","protocol":"medsign-keysplit","q1":["BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","BAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"],"reply_to":"EBESExQVFhcYGRobHB0eHw","session":"AAECAwQFBgcICQoLDA0ODw","type":"cosign.commit","v":1}')
  // the optional pin_proof is omitted, not null (m.CosignCommit(..., digests=(bytes(32),), q1=(b"\x04" + bytes(64),)).encode())
  const noPin = { ...commit, digests: [fill(32, 0)], q1: [Uint8Array.from([4, ...fill(64, 0)])], pin_proof: undefined }
  assert.equal(messages.encodeText(noPin),
    '{"digests":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"nonce":"ICEiIyQlJicoKSorLC0uLw","protocol":"medsign-keysplit","q1":["BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"reply_to":"EBESExQVFhcYGRobHB0eHw","session":"AAECAwQFBgcICQoLDA0ODw","type":"cosign.commit","v":1}')
  // m.CosignOffer(session=sess, nonce=n1, public_key=b"\x04" + bytes(64), digests=(bytes(32),), require_pin=False).encode()
  const offer = { type: 'cosign.offer', session: range(0, 16), nonce: range(16, 32), public_key: Uint8Array.from([4, ...fill(64, 0)]), digests: [fill(32, 0)], require_pin: false }
  assert.equal(messages.encodeText(offer),
    '{"digests":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"nonce":"EBESExQVFhcYGRobHB0eHw","protocol":"medsign-keysplit","public_key":"BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","require_pin":false,"session":"AAECAwQFBgcICQoLDA0ODw","type":"cosign.offer","v":1}')
  assert.equal(toHex(messages.encode(offer)), toHex(utf8Encode(messages.encodeText(offer))))
})

test('every message of the worked example decodes and encodes back to its wire bytes', () => {
  for (const { type, wire } of WORKED.messages) {
    const decoded = messages.decode(wire, type)
    assert.equal(messages.encodeText(decoded), wire, type)
    assert.deepEqual(messages.decode(utf8Encode(wire), type), decoded)
    assert.deepEqual(messages.decode(JSON.parse(wire), type), decoded)
    assert.equal(messages.peekType(wire), type)
  }
})

test('decode refuses what keysplit.messages.decode refuses', () => {
  const offer = JSON.parse(WORKED.messages.find((m) => m.type === 'cosign.offer').wire)
  const text = (o) => JSON.stringify(o)
  const bad = [
    ['not JSON', 'not json'],
    ['an array', '[]'],
    ['another protocol', text({ ...offer, protocol: 'other' })],
    ['v as a string', text({ ...offer, v: '1' })],
    ['v as true', text({ ...offer, v: true })],
    ['v = 2', text({ ...offer, v: 2 })],
    ['v = 1.0', text(offer).replace('"v":1', '"v":1.0')],
    ['another type', text({ ...offer, type: 'cosign.commit' })],
    ['an unknown member', text({ ...offer, extra: 'x' })],
    ['a null member', text({ ...offer, require_pin: null })],
    ['a missing member', text({ ...offer, public_key: undefined })],
    ['require_pin as a string', text({ ...offer, require_pin: 'true' })],
    ['padding', text({ ...offer, session: `${offer.session}==` })],
    ['the standard alphabet', text({ ...offer, digests: [offer.digests[0].replace(/-/g, '+'), offer.digests[1]] })],
    ['non-zero unused bits', text({ ...offer, session: offer.session.slice(0, -1) + (offer.session.endsWith('w') ? 'x' : 'w') })],
    ['a wrong size', text({ ...offer, session: base64url.encode(new Uint8Array(15)) })],
    ['an empty list', text({ ...offer, digests: [] })],
    ['501 items', text({ ...offer, digests: Array(501).fill(offer.digests[0]) })],
    ['a list item that is not a string', text({ ...offer, digests: [1] })],
    ['a duplicate member', text(offer).replace('{', `{"session":"${offer.session}",`)],
    ['a byte-order mark', '\ufeff' + text(offer)],
  ]
  for (const [what, data] of bad) {
    assert.throws(() => messages.decode(data, 'cosign.offer'), malformed, what)
  }
  assert.throws(() => messages.decode(Uint8Array.from([0xef, 0xbb, 0xbf, ...utf8Encode(text(offer))]), 'cosign.offer'), malformed)
  assert.throws(() => messages.decode(Uint8Array.from([0x7b, 0xff, 0x7d]), 'cosign.offer'), malformed)
  // lists of one message must have one item per digest
  const response = JSON.parse(WORKED.messages.find((m) => m.type === 'cosign.response').wire)
  assert.throws(() => messages.decode({ ...response, s3: [response.s3[0]] }, 'cosign.response'), malformed)
  // require_pin defaults to true when absent
  const { require_pin: _, ...withoutPin } = offer
  assert.equal(messages.decode(withoutPin, 'cosign.offer').require_pin, true)
  assert.throws(() => messages.peekType('{"type":"nope"}'), malformed)
})

test('parseJson: duplicates refused at any depth, floats kept apart on request', () => {
  assert.deepEqual(messages.parseJson('{"a":[1,{"b":"x\\u00e9"}],"c":null,"d":true}'), { a: [1, { b: 'xé' }], c: null, d: true })
  assert.throws(() => messages.parseJson('{"a":{"b":1,"b":2}}'), malformed)
  assert.throws(() => messages.parseJson('{"a":1} x'), malformed)
  assert.equal(messages.parseJson('1.5'), 1.5)
  assert.equal(messages.parseJson('1.0', { floats: true }).value, 1)
  assert.equal(messages.parseJson('{"__proto__":1}').__proto__, 1) // an own member, not the prototype
  assert.throws(() => messages.parseJson('['.repeat(100) + ']'.repeat(100)), malformed)
})
