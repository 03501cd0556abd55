'use strict'
/**
 * Key-value storage for the phone's state (device key, wrapped share, PIN salt).  A storage is
 * an object with get(key) -> string | null, set(key, string), remove(key); each may also return
 * a Promise.  Values are strings (the client stores JSON).
 *
 * What is stored is what keysplit/README.md section 10 allows: the wrapped share (useless
 * without the server and the PIN), the salt, the joint public key, and the device key.  Never
 * the PIN, a PIN proof or an unwrap key.
 */

/** WeChat mini programs: wx.getStorageSync / wx.setStorageSync (per user and mini program). */
function wxStorage(wx = (typeof globalThis !== 'undefined' ? globalThis.wx : undefined), { prefix = 'medsign:' } = {}) {
  if (!wx || typeof wx.getStorageSync !== 'function') throw new TypeError('wxStorage needs the wx object')
  return {
    get(key) {
      const value = wx.getStorageSync(prefix + key)
      return value === '' || value === undefined || value === null ? null : String(value)
    },
    set(key, value) {
      wx.setStorageSync(prefix + key, String(value))
    },
    remove(key) {
      wx.removeStorageSync(prefix + key)
    },
  }
}

/** node: one JSON file (mode 0600), rewritten atomically on every change. */
function fileStorage(path) {
  // module.require, not require: mini-program bundlers must not try to resolve "fs"
  const fs = module.require('fs')
  const read = () => {
    try {
      return JSON.parse(fs.readFileSync(path, 'utf8'))
    } catch (err) {
      if (err.code === 'ENOENT') return {}
      throw err
    }
  }
  const write = (data) => {
    const tmp = `${path}.${process.pid}.tmp`
    fs.writeFileSync(tmp, JSON.stringify(data, null, 2), { mode: 0o600 })
    fs.renameSync(tmp, path)
  }
  return {
    get(key) {
      const value = read()[key]
      return value === undefined ? null : value
    },
    set(key, value) {
      const data = read()
      data[key] = String(value)
      write(data)
    },
    remove(key) {
      const data = read()
      delete data[key]
      write(data)
    },
  }
}

/** In memory (tests, or a phone that must forget everything when the page closes). */
function memoryStorage(initial = {}) {
  const data = { ...initial }
  return {
    get: (key) => (key in data ? data[key] : null),
    set: (key, value) => { data[key] = String(value) },
    remove: (key) => { delete data[key] },
    data,
  }
}

module.exports = { wxStorage, fileStorage, memoryStorage }
