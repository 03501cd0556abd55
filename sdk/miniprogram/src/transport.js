'use strict'
/**
 * HTTP transports.  A transport is an object with one method:
 *
 *   request({ method, url, headers, body }) -> Promise<{ status, headers, body }>
 *
 * `body` is a Uint8Array or undefined (sent byte for byte: the device signature covers it);
 * the answer's `headers` have lower-case names and its `body` is a Uint8Array.  A network
 * failure rejects with MedsignError code 'network-error' (status 0).
 */

const { MedsignError } = require('./errors')

function lowerCaseHeaders(headers) {
  const out = {}
  if (!headers) return out
  if (typeof headers.forEach === 'function' && !Array.isArray(headers)) {
    headers.forEach((value, name) => { out[String(name).toLowerCase()] = String(value) })
    return out
  }
  for (const name of Object.keys(headers)) out[name.toLowerCase()] = String(headers[name])
  return out
}

function exactBuffer(bytes) {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? bytes.buffer
    : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
}

/** WeChat mini programs: wx.request with an ArrayBuffer response (needs the server's domain in the request whitelist). */
function wxTransport(wx = (typeof globalThis !== 'undefined' ? globalThis.wx : undefined), { timeout = 30000 } = {}) {
  if (!wx || typeof wx.request !== 'function') throw new TypeError('wxTransport needs the wx object')
  return {
    request({ method, url, headers = {}, body }) {
      return new Promise((resolve, reject) => {
        const options = {
          url,
          method,
          header: headers,
          timeout,
          responseType: 'arraybuffer',
          dataType: 'binary', // anything but "json": no JSON.parse of the answer by wx
          success: (res) => resolve({
            status: res.statusCode,
            headers: lowerCaseHeaders(res.header || res.headers),
            body: new Uint8Array(res.data || new ArrayBuffer(0)),
          }),
          fail: (err) => reject(new MedsignError(`网络请求失败：${(err && err.errMsg) || 'wx.request fail'}`, { code: 'network-error' })),
        }
        // never pass data on a GET: wx.request turns it into a query string
        if (body && body.length) options.data = exactBuffer(body)
        wx.request(options)
      })
    },
  }
}

/** node (>= 18) and browsers: the global fetch. */
function fetchTransport({ fetch: fetchImpl = (typeof globalThis !== 'undefined' ? globalThis.fetch : undefined), timeout = 30000 } = {}) {
  if (typeof fetchImpl !== 'function') throw new TypeError('fetchTransport needs fetch')
  return {
    async request({ method, url, headers = {}, body }) {
      let res
      const controller = typeof AbortController === 'function' ? new AbortController() : null
      const timer = controller ? setTimeout(() => controller.abort(), timeout) : null
      try {
        res = await fetchImpl(url, {
          method,
          headers,
          body: body && body.length ? body : undefined,
          signal: controller ? controller.signal : undefined,
          redirect: 'manual',
        })
        const data = new Uint8Array(await res.arrayBuffer())
        return { status: res.status, headers: lowerCaseHeaders(res.headers), body: data }
      } catch (err) {
        throw new MedsignError(`网络请求失败：${err && err.message}`, { code: 'network-error' })
      } finally {
        if (timer) clearTimeout(timer)
      }
    },
  }
}

module.exports = { wxTransport, fetchTransport }
