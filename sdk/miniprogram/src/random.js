'use strict'
/**
 * The CSPRNG every secret of the SDK comes from (d1, k1, the device key, the PIN salt, nonces).
 * Never Math.random.
 *
 * Sources, in order: a source set with setRandomSource(fn); the Web Crypto API
 * (globalThis.crypto.getRandomValues: node >= 19, browsers, newer mini-program runtimes);
 * node's crypto module; a pool filled in advance from wx.getRandomValues (asynchronous in mini
 * programs: PhoneClient calls prepare() before every operation).  With none of them,
 * randomBytes throws rather than return weak bytes.
 */

let custom = null
let wxApi = null
let pool = new Uint8Array(0)
const POOL_BYTES = 4096

function webCrypto() {
  const c = typeof globalThis !== 'undefined' ? globalThis.crypto : undefined
  return c && typeof c.getRandomValues === 'function' && !c.__medsignPool ? c : null
}

let nodeCrypto
function nodeRandom() {
  if (nodeCrypto === undefined) {
    nodeCrypto = null
    try {
      // module.require, not require: mini-program bundlers must not try to resolve "crypto"
      const nodeRequire = typeof module !== 'undefined' && typeof module.require === 'function' ? module.require.bind(module) : null
      if (nodeRequire && typeof process !== 'undefined' && process.versions && process.versions.node) nodeCrypto = nodeRequire('crypto')
    } catch (e) {
      nodeCrypto = null
    }
  }
  return nodeCrypto
}

function fromPool(n) {
  if (pool.length < n) {
    throw new Error('随机数不足：请先 await prepareRandom() (wx.getRandomValues) / not enough prefetched entropy')
  }
  const out = pool.slice(0, n)
  pool.fill(0, 0, n)
  pool = pool.slice(n)
  return out
}

/** n random bytes from a CSPRNG (synchronous). */
function randomBytes(n) {
  if (custom) {
    const out = custom(n)
    if (!(out instanceof Uint8Array) || out.length !== n) throw new Error('random source returned the wrong length')
    return out
  }
  const wc = webCrypto()
  if (wc) {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i += 65536) wc.getRandomValues(out.subarray(i, Math.min(n, i + 65536)))
    return out
  }
  const nc = nodeRandom()
  if (nc) return new Uint8Array(nc.randomBytes(n))
  return fromPool(n)
}

/** Use this function (n -> Uint8Array of n bytes) as the random source; null restores the default. */
function setRandomSource(fn) {
  custom = fn || null
}

function wxRandom(wx, length) {
  return new Promise((resolve, reject) => {
    wx.getRandomValues({
      length,
      success: (res) => resolve(new Uint8Array(res.randomValues)),
      fail: (err) => reject(new Error('wx.getRandomValues failed: ' + (err && err.errMsg))),
    })
  })
}

/**
 * Make sure at least `bytes` random bytes can be drawn synchronously.  Only does something where
 * no synchronous source exists (a mini program without globalThis.crypto): then it fills the
 * pool from wx.getRandomValues.
 */
async function prepareRandom(bytes = 1024, wx = wxApi) {
  if (custom || webCrypto() || nodeRandom()) return
  if (!wx || typeof wx.getRandomValues !== 'function') {
    throw new Error('no secure random source: set one with setRandomSource() or pass wx')
  }
  wxApi = wx
  if (pool.length >= bytes) return
  const want = Math.max(bytes - pool.length, POOL_BYTES)
  const fresh = await wxRandom(wx, want)
  const merged = new Uint8Array(pool.length + fresh.length)
  merged.set(pool)
  merged.set(fresh, pool.length)
  pool = merged
}

/**
 * For mini programs: fill the pool from wx.getRandomValues and, when the runtime has no
 * globalThis.crypto, install a getRandomValues that draws from that pool, so that sm-crypto
 * (which wants crypto.getRandomValues when it loads) can be required afterwards.
 */
async function installWeChatRandom(wx, bytes = POOL_BYTES) {
  wxApi = wx
  await prepareRandom(bytes, wx)
  if (typeof globalThis !== 'undefined' && !globalThis.crypto) {
    globalThis.crypto = {
      __medsignPool: true,
      getRandomValues(array) {
        const view = new Uint8Array(array.buffer, array.byteOffset, array.byteLength)
        view.set(fromPool(view.length))
        return array
      },
    }
  }
}

/** The bytes left in the wx pool (tests). */
function poolSize() {
  return pool.length
}

module.exports = { randomBytes, setRandomSource, prepareRandom, installWeChatRandom, poolSize }
