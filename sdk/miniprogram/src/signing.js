'use strict'
/**
 * Signed requests (appliance/api/hmac_signing.py, appliance/api/device_signing.py).
 *
 * The string to sign is six lines joined by "\n", UTF-8:
 *   METHOD, canonical path, canonical query, lower-case hex SM3 of the body, timestamp, nonce.
 * A phone signs it with its device key (SM2 with SM3, default ID, DER, standard base64):
 *   Authorization: MEDSIGN-DEVICE-SM2 deviceId=<id>, signature=<base64 DER>
 *   X-Medsign-Timestamp: <unix seconds>
 *   X-Medsign-Nonce: <16 to 64 of [A-Za-z0-9_-]>
 */

const { base64, base64url, toBytes, toHex, utf8Decode, utf8Encode } = require('./bytes')
const crypto = require('./crypto')
const { randomBytes } = require('./random')

const DEVICE_SCHEME = 'MEDSIGN-DEVICE-SM2'
const TIMESTAMP_HEADER = 'X-Medsign-Timestamp'
const NONCE_HEADER = 'X-Medsign-Nonce'
const UNRESERVED = /[A-Za-z0-9_.~-]/

/** Python's urllib.parse.quote(text, safe): UTF-8, RFC 3986 unreserved characters kept. */
function quote(text, safe = '') {
  let out = ''
  for (const ch of String(text)) {
    if (UNRESERVED.test(ch) || safe.includes(ch)) {
      out += ch
    } else {
      for (const b of utf8Encode(ch)) out += '%' + b.toString(16).toUpperCase().padStart(2, '0')
    }
  }
  return out
}

/** Python's urllib.parse.unquote (plus=false) / unquote_plus (plus=true), lenient like Python's. */
function unquote(text, plus = false) {
  const s = plus ? String(text).replace(/\+/g, ' ') : String(text)
  const bytes = []
  let out = ''
  const drain = () => {
    if (!bytes.length) return
    const chunk = Uint8Array.from(bytes)
    bytes.length = 0
    try {
      out += utf8Decode(chunk)
    } catch (e) {
      out += '\ufffd' // Python replaces invalid UTF-8 (errors="replace"); close enough for a client
    }
  }
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '%' && /^[0-9a-fA-F]{2}$/.test(s.substr(i + 1, 2))) {
      bytes.push(parseInt(s.substr(i + 1, 2), 16))
      i += 2
    } else {
      drain()
      out += s[i]
    }
  }
  drain()
  return out
}

/** The canonical path: the percent-decoded path, RFC 3986 encoded, "/" kept. */
function canonicalPath(path) {
  return quote(unquote(path || '/') || '/', '/')
}

/** The canonical query: pairs decoded ("+" is a space), encoded, sorted by name then value. */
function canonicalQuery(query) {
  const pairs = String(query || '').split('&').filter(Boolean).map((part) => {
    const at = part.indexOf('=')
    const name = at < 0 ? part : part.slice(0, at)
    const value = at < 0 ? '' : part.slice(at + 1)
    return [quote(unquote(name, true)), quote(unquote(value, true))]
  })
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
  return pairs.map(([n, v]) => `${n}=${v}`).join('&')
}

/** The six lines, UTF-8 encoded; `target` is the path with its query as sent. */
function stringToSign({ method, target, body = new Uint8Array(0), timestamp, nonce }) {
  const q = target.indexOf('?')
  const path = q < 0 ? target : target.slice(0, q)
  const query = q < 0 ? '' : target.slice(q + 1)
  return utf8Encode([
    method.toUpperCase(), canonicalPath(path), canonicalQuery(query),
    toHex(crypto.sm3(toBytes(body))), String(timestamp), nonce,
  ].join('\n'))
}

/** A fresh request nonce: 24 characters of base64url. */
function requestNonce() {
  return base64url.encode(randomBytes(18))
}

/** The headers of a device-signed request. */
function deviceHeaders({ method, target, body, deviceId, privateKey, publicKey, timestamp, nonce = requestNonce() }) {
  const stamp = String(timestamp === undefined ? Math.floor(Date.now() / 1000) : timestamp)
  const message = stringToSign({ method, target, body, timestamp: stamp, nonce })
  const signature = base64.encode(crypto.sign(privateKey, message, { publicKey }))
  return {
    Authorization: `${DEVICE_SCHEME} deviceId=${deviceId}, signature=${signature}`,
    [TIMESTAMP_HEADER]: stamp,
    [NONCE_HEADER]: nonce,
  }
}

module.exports = {
  DEVICE_SCHEME,
  TIMESTAMP_HEADER,
  NONCE_HEADER,
  quote,
  unquote,
  canonicalPath,
  canonicalQuery,
  stringToSign,
  requestNonce,
  deviceHeaders,
}
