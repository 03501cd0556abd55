'use strict'
/**
 * keysplit protocol messages (keysplit/messages.py, keysplit/README.md sections 6 and 7):
 * versioned JSON objects whose binary fields are canonical base64url without padding.
 *
 * In JavaScript a message is a plain object with the wire's member names:
 *   { type: 'cosign.commit', session: Uint8Array, nonce: Uint8Array, reply_to: Uint8Array,
 *     digests: [Uint8Array, ...], q1: [Uint8Array, ...], pin_proof: Uint8Array }
 * encode() writes what keysplit/messages.py writes, byte for byte (compact JSON, sorted keys);
 * decode() accepts exactly what it accepts.
 */

const { base64url, toBytes, utf8Decode, utf8Encode } = require('./bytes')
const { malformed } = require('./errors')

const PROTOCOL = 'medsign-keysplit'
const VERSION = 1
const SESSION_SIZE = 16
const NONCE_SIZE = 16
const DIGEST_SIZE = 32
const POINT_SIZE = 65
const SCALAR_SIZE = 32
const MAX_SM2_SIGNATURE = 72
const MAX_ITEMS = 500
const MAX_RSA_BYTES = 512
const MAX_MESSAGE_BYTES = 1 << 20

const bin = (exact, extra = {}) => ({ kind: 'bytes', exact, ...extra })
const list = (exact, extra = {}) => ({ kind: 'bytes', exact, items: true, ...extra })
const BOOL = { kind: 'bool', default: true }

// type -> [is a reply (has reply_to), the type's own fields]
const TYPES = {
  'keygen.offer': [false, {}],
  'keygen.commit': [true, { p1: bin(POINT_SIZE), pin_proof: bin(SCALAR_SIZE) }],
  'keygen.result': [true, { public_key: bin(POINT_SIZE), unwrap: bin(SCALAR_SIZE) }],
  'cosign.offer': [false, { public_key: bin(POINT_SIZE), digests: list(DIGEST_SIZE), require_pin: BOOL }],
  'cosign.commit': [true, {
    digests: list(DIGEST_SIZE), q1: list(POINT_SIZE), pin_proof: bin(SCALAR_SIZE, { optional: true }),
  }],
  'cosign.response': [true, {
    r: list(SCALAR_SIZE), s2: list(SCALAR_SIZE), s3: list(SCALAR_SIZE), unwrap: bin(SCALAR_SIZE, { optional: true }),
  }],
  'cosign.result': [true, { signatures: list(null, { max: MAX_SM2_SIGNATURE }) }],
  'cosign.done': [true, {}],
  'rsa.offer': [false, { modulus: bin(null, { max: MAX_RSA_BYTES }), digests: list(DIGEST_SIZE), require_pin: BOOL }],
  'rsa.unlock': [true, { pin_proof: bin(SCALAR_SIZE, { optional: true }) }],
  'rsa.unlocked': [true, { unwrap: bin(SCALAR_SIZE, { optional: true }) }],
  'rsa.commit': [true, { partials: list(null, { max: MAX_RSA_BYTES }) }],
  'rsa.result': [true, { signatures: list(null, { max: MAX_RSA_BYTES }) }],
}

function fieldsOf(type) {
  const entry = TYPES[type]
  if (!entry) throw new TypeError(`unknown message type ${type}`)
  const [reply, own] = entry
  const fields = { session: bin(SESSION_SIZE), nonce: bin(NONCE_SIZE) }
  if (reply) fields.reply_to = bin(NONCE_SIZE)
  return Object.assign(fields, own)
}

// --- strict JSON ---------------------------------------------------------------------------

class JsonFloat {
  constructor(value) { this.value = value }
}

/**
 * JSON.parse that refuses duplicate members (two values for one field would let two parsers
 * read two different messages).  With { floats: true } a number written with a fraction or an
 * exponent is returned as a JsonFloat, so that `"v": 1.0` can be told from `"v": 1`.
 */
function parseJson(text, { floats = false } = {}) {
  let i = 0
  const fail = (what) => { throw malformed(`not JSON: ${what} at ${i}`) }
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++ }
  let depth = 0
  function value() {
    ws()
    const c = text[i]
    if (c === '{') {
      if (++depth > 64) fail('too deeply nested')
      i++
      const obj = {}
      const seen = new Set()
      ws()
      if (text[i] === '}') { i++; depth--; return obj }
      for (;;) {
        ws()
        if (text[i] !== '"') fail('expected a member name')
        const key = string()
        if (seen.has(key)) throw malformed(`member ${JSON.stringify(key)} appears twice`)
        seen.add(key)
        ws()
        if (text[i++] !== ':') fail('expected ":"')
        const v = value()
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true })
        ws()
        if (text[i] === ',') { i++; continue }
        if (text[i] === '}') { i++; depth--; return obj }
        fail('expected "," or "}"')
      }
    }
    if (c === '[') {
      if (++depth > 64) fail('too deeply nested')
      i++
      const arr = []
      ws()
      if (text[i] === ']') { i++; depth--; return arr }
      for (;;) {
        arr.push(value())
        ws()
        if (text[i] === ',') { i++; continue }
        if (text[i] === ']') { i++; depth--; return arr }
        fail('expected "," or "]"')
      }
    }
    if (c === '"') return string()
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400))
    if (m && m[0]) {
      i += m[0].length
      const n = Number(m[0])
      return floats && (m[2] || m[3]) ? new JsonFloat(n) : n
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v }
    }
    return fail('unexpected character')
  }
  function string() {
    const start = i
    i++
    for (;;) {
      if (i >= text.length) fail('unterminated string')
      const c = text.charCodeAt(i)
      if (c === 0x22) break
      if (c < 0x20) fail('control character in string')
      i += c === 0x5c ? 2 : 1
    }
    i++
    try {
      return JSON.parse(text.slice(start, i))
    } catch (e) {
      return fail('bad string escape')
    }
  }
  const result = value()
  ws()
  if (i !== text.length) fail('trailing characters')
  return result
}

// --- encode / decode -----------------------------------------------------------------------

function encodeValue(value) {
  if (Array.isArray(value)) return value.map(encodeValue)
  if (value instanceof Uint8Array) return base64url.encode(value)
  return value
}

/** The JSON wire form as a string (keysplit's: compact, keys sorted). */
function encodeText(message) {
  const fields = fieldsOf(message.type)
  const body = { protocol: PROTOCOL, v: VERSION, type: message.type }
  for (const name of Object.keys(fields)) {
    const value = message[name]
    if (value === undefined || value === null) {
      if (fields[name].optional) continue
      if (fields[name].kind === 'bool') { body[name] = fields[name].default; continue }
      throw new TypeError(`${message.type}: ${name} is missing`)
    }
    body[name] = encodeValue(value)
  }
  const sorted = {}
  for (const key of Object.keys(body).sort()) sorted[key] = body[key]
  return JSON.stringify(sorted)
}

/** The JSON wire form as UTF-8 bytes. */
function encode(message) {
  return utf8Encode(encodeText(message))
}

/** The wire form as a plain JSON value (what the mobile API embeds as `message`). */
function toJSONValue(message) {
  return JSON.parse(encodeText(message))
}

function decodeBytes(name, raw, spec) {
  if (typeof raw !== 'string') throw malformed(`field ${name} must be a base64url string`)
  let value
  try {
    value = base64url.decode(raw)
  } catch (e) {
    throw malformed(`field ${name} is not base64url`)
  }
  if (base64url.encode(value) !== raw) throw malformed(`field ${name} is not canonical unpadded base64url`)
  if (spec.exact && value.length !== spec.exact) {
    throw malformed(`field ${name} must be ${spec.exact} bytes, got ${value.length}`)
  }
  if (spec.max && !(value.length > 0 && value.length <= spec.max)) {
    throw malformed(`field ${name} must be 1 to ${spec.max} bytes`)
  }
  return value
}

function decodeField(name, raw, spec) {
  if (raw === null) throw malformed(`field ${name} must not be null (omit an optional field)`)
  if (spec.kind === 'bool') {
    if (raw === undefined) return spec.default
    if (typeof raw !== 'boolean') throw malformed(`field ${name} must be true or false`)
    return raw
  }
  if (raw === undefined) {
    if (spec.optional) return undefined
    throw malformed(`field ${name} is missing`)
  }
  if (spec.items) {
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_ITEMS) {
      throw malformed(`field ${name} must be a list of 1 to ${MAX_ITEMS} items`)
    }
    return raw.map((item) => decodeBytes(name, item, spec))
  }
  return decodeBytes(name, raw, spec)
}

function parse(data) {
  if (typeof data === 'string') {
    if (data.length > MAX_MESSAGE_BYTES) throw malformed(`message larger than ${MAX_MESSAGE_BYTES} bytes`)
    return parseJson(data, { floats: true })
  }
  if (data instanceof Uint8Array || data instanceof ArrayBuffer) {
    const bytes = toBytes(data)
    if (bytes.length > MAX_MESSAGE_BYTES) throw malformed(`message larger than ${MAX_MESSAGE_BYTES} bytes`)
    if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) throw malformed('not UTF-8 JSON: byte-order mark')
    let text
    try {
      text = utf8Decode(bytes)
    } catch (e) {
      throw malformed('not UTF-8 JSON')
    }
    return parseJson(text, { floats: true })
  }
  return data // an already parsed JSON value (the API embeds messages in its answers)
}

/**
 * Parse and validate a message of type `expectedType` from JSON text, UTF-8 bytes or an
 * already-parsed object; ProtocolError('malformed-message') for anything else.
 */
function decode(data, expectedType) {
  const body = parse(data)
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw malformed('a message is a JSON object')
  if (body.protocol !== PROTOCOL) throw malformed(`not a ${PROTOCOL} message`)
  if (typeof body.v !== 'number' || !Number.isInteger(body.v) || body.v !== VERSION) {
    const shown = body.v instanceof JsonFloat ? body.v.value.toFixed(1) : JSON.stringify(body.v)
    throw malformed(`unsupported protocol version ${shown} (expected ${VERSION})`)
  }
  if (body.type !== expectedType) throw malformed(`expected a ${expectedType} message, got ${JSON.stringify(body.type)}`)
  const fields = fieldsOf(expectedType)
  const unknown = Object.keys(body).filter((k) => !(k in fields) && !['protocol', 'v', 'type'].includes(k))
  if (unknown.length) throw malformed(`unknown fields ${JSON.stringify(unknown.sort())}`)
  const message = { type: expectedType }
  for (const [name, spec] of Object.entries(fields)) {
    const has = Object.prototype.hasOwnProperty.call(body, name)
    const value = decodeField(name, has ? body[name] : undefined, spec)
    if (value !== undefined) message[name] = value
  }
  const counts = new Set(Object.entries(fields).filter(([n, s]) => s.items && message[n]).map(([n]) => message[n].length))
  if (counts.size > 1) throw malformed('the lists of a message must all have one item per digest')
  return message
}

/** The `type` of a message (not validated). */
function peekType(data) {
  const body = parse(data)
  const kind = body && typeof body === 'object' ? body.type : undefined
  if (typeof kind !== 'string' || !TYPES[kind]) throw malformed(`unknown message type ${JSON.stringify(kind)}`)
  return kind
}

module.exports = {
  PROTOCOL,
  VERSION,
  SESSION_SIZE,
  NONCE_SIZE,
  DIGEST_SIZE,
  POINT_SIZE,
  SCALAR_SIZE,
  MAX_ITEMS,
  MAX_SM2_SIGNATURE,
  MAX_MESSAGE_BYTES,
  TYPES: Object.keys(TYPES),
  encode,
  encodeText,
  toJSONValue,
  decode,
  peekType,
  parseJson,
}
