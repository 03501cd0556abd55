'use strict'
/**
 * Byte helpers that work in WeChat mini programs (no Buffer, no TextEncoder, no atob there)
 * and in node.  Every binary value of the SDK is a Uint8Array.
 */

const HEX = '0123456789abcdef'
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

function toBytes(value) {
  if (value instanceof Uint8Array) return value
  if (value instanceof ArrayBuffer) return new Uint8Array(value)
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  if (Array.isArray(value)) return Uint8Array.from(value)
  if (typeof value === 'string') return utf8Encode(value)
  throw new TypeError('expected bytes (Uint8Array, ArrayBuffer, array or string)')
}

function toHex(bytes) {
  const b = toBytes(bytes)
  let out = ''
  for (let i = 0; i < b.length; i++) out += HEX[b[i] >> 4] + HEX[b[i] & 15]
  return out
}

function fromHex(hex) {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError('not a hex string of even length')
  }
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16)
  return out
}

function concat(...parts) {
  const arrays = parts.map(toBytes)
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0))
  let offset = 0
  for (const a of arrays) {
    out.set(a, offset)
    offset += a.length
  }
  return out
}

function equal(a, b) {
  a = toBytes(a)
  b = toBytes(b)
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i]
  return diff === 0
}

/** UTF-8 of a JS string (lone surrogates become U+FFFD, as TextEncoder does). */
function utf8Encode(text) {
  const out = []
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)
        i++
      } else c = 0xfffd
    } else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd
    if (c < 0x80) out.push(c)
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63))
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
  }
  return Uint8Array.from(out)
}

/** Strict UTF-8 decoding; throws on malformed input. */
function utf8Decode(bytes) {
  const b = toBytes(bytes)
  let out = ''
  for (let i = 0; i < b.length;) {
    const c = b[i]
    let cp
    let extra
    if (c < 0x80) { cp = c; extra = 0 } else if (c >= 0xc2 && c < 0xe0) { cp = c & 31; extra = 1 } else if (c >= 0xe0 && c < 0xf0) { cp = c & 15; extra = 2 } else if (c >= 0xf0 && c < 0xf5) { cp = c & 7; extra = 3 } else throw new TypeError('malformed UTF-8')
    if (i + extra >= b.length + (extra ? 0 : 1)) throw new TypeError('truncated UTF-8')
    for (let k = 1; k <= extra; k++) {
      const d = b[i + k]
      if ((d & 0xc0) !== 0x80) throw new TypeError('malformed UTF-8')
      cp = (cp << 6) | (d & 63)
    }
    if ((extra === 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (extra === 3 && (cp < 0x10000 || cp > 0x10ffff))) {
      throw new TypeError('malformed UTF-8')
    }
    out += String.fromCodePoint(cp)
    i += extra + 1
  }
  return out
}

function encode64(bytes, alphabet, pad) {
  const b = toBytes(bytes)
  let out = ''
  let i = 0
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2]
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + alphabet[n & 63]
  }
  const rest = b.length - i
  if (rest === 1) {
    const n = b[i] << 16
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + (pad ? '==' : '')
  } else if (rest === 2) {
    const n = (b[i] << 16) | (b[i + 1] << 8)
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + (pad ? '=' : '')
  }
  return out
}

function decode64(text, alphabet, padded) {
  if (typeof text !== 'string') throw new TypeError('base64: not a string')
  let body = text
  if (padded) {
    if (text.length % 4 !== 0) throw new TypeError('base64: length is not a multiple of 4')
    body = text.replace(/={1,2}$/, '')
  }
  if (body.length % 4 === 1) throw new TypeError('base64: impossible length')
  const out = new Uint8Array(Math.floor(body.length * 3 / 4))
  let bits = 0
  let acc = 0
  let o = 0
  for (let i = 0; i < body.length; i++) {
    const v = alphabet.indexOf(body[i])
    if (v < 0) throw new TypeError('base64: invalid character')
    acc = (acc << 6) | v
    bits += 6
    if (bits >= 8) {
      bits -= 8
      out[o++] = (acc >> bits) & 255
    }
  }
  if (bits && (acc & ((1 << bits) - 1)) !== 0) throw new TypeError('base64: non-zero unused bits')
  return out
}

/** Standard base64 with padding (RFC 4648 section 4). */
const base64 = {
  encode: (bytes) => encode64(bytes, B64, true),
  decode: (text) => decode64(text, B64, true),
}

/** base64url without padding (RFC 4648 section 5), canonical only: what keysplit sends. */
const base64url = {
  encode: (bytes) => encode64(bytes, B64URL, false),
  decode: (text) => decode64(text, B64URL, false),
}

module.exports = {
  toBytes, toHex, fromHex, concat, equal, utf8Encode, utf8Decode, base64, base64url,
}
