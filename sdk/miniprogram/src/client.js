'use strict'
/**
 * PhoneClient: a doctor's / pharmacist's phone against the appliance's mobile API
 * (/api/v1/mobile/..., appliance/api/mobile.py).  Every request but activation is signed with
 * the phone's device key (MEDSIGN-DEVICE-SM2); signing keys are split (two-party SM2,
 * keysplit/README.md): the phone holds d1 wrapped under a key that needs the PIN *and* the
 * server, so the PIN is only ever checked by the server (attempt counter, lock).
 *
 *   const client = new PhoneClient({ baseUrl, transport: wxTransport(wx), storage: wxStorage(wx), wx })
 *   await client.activate(code)          // bind this phone (one-time activation code)
 *   await client.enroll(pin)             // co-keygen + certificate
 *   const tasks = await client.tasks()   // pending tasks
 *   await client.sign(tasks.map(t => t.id), { pin })   // one confirmation for the batch
 *
 * Errors are MedsignError: status (HTTP status, 0 for the phone's own refusals), code (the
 * problem document's stable code: pin-wrong, pin-locked, not-pending, ...), detail, and
 * attemptsLeft for pin-wrong.
 */

const { base64, fromHex, toBytes, toHex, utf8Decode, utf8Encode } = require('./bytes')
const crypto = require('./crypto')
const messages = require('./messages')
const signing = require('./signing')
const { prepareRandom } = require('./random')
const { MedsignError } = require('./errors')

const STATE_VERSION = 1
const MAX_ROUNDS = 3
const MOBILE = '/api/v1/mobile'

function splitBaseUrl(baseUrl) {
  const m = /^(https?:\/\/[^/?#]+)(\/[^?#]*)?$/i.exec(String(baseUrl || '').trim())
  if (!m) throw new TypeError('baseUrl must be an http(s) URL such as https://medsign.hospital.example')
  return { origin: m[1], prefix: (m[2] || '').replace(/\/+$/, '') }
}

function buildQuery(query) {
  const parts = []
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null) continue
    parts.push(`${signing.quote(name)}=${signing.quote(String(value))}`)
  }
  return parts.join('&')
}

const idPart = (value) => signing.quote(String(value))
const localError = (code, message) => new MedsignError(message, { status: 0, code })

class PhoneClient {
  /**
   * @param {object} options
   * @param {string} options.baseUrl   the appliance, e.g. https://medsign.hospital.example
   * @param {object} options.transport wxTransport(wx) or fetchTransport()
   * @param {object} options.storage   wxStorage(wx), fileStorage(path) or memoryStorage()
   * @param {object} [options.wx]      the wx object, for wx.getRandomValues where the runtime
   *                                   has no synchronous CSPRNG
   * @param {string} [options.storageKey] the storage key of this phone's state
   */
  constructor({ baseUrl, transport, storage, wx, storageKey = 'state', deviceName = '微信小程序', now = () => Date.now() } = {}) {
    if (!transport || typeof transport.request !== 'function') throw new TypeError('PhoneClient needs a transport')
    if (!storage || typeof storage.get !== 'function') throw new TypeError('PhoneClient needs a storage')
    const { origin, prefix } = splitBaseUrl(baseUrl)
    this._origin = origin
    this._prefix = prefix
    this._transport = transport
    this._storage = storage
    this._storageKey = storageKey
    this._wx = wx
    this._deviceName = deviceName
    this._now = now
    this._clockOffset = 0 // server time - local time, learnt from a request-expired answer
    this._state = null
    this._unwrap = null // kept in memory only, for auto-sign windows (keysplit/README.md 10.4)
    this._autoSignUntil = 0
  }

  // --- state ---------------------------------------------------------------------------------

  async _load() {
    if (this._state) return this._state
    const raw = await this._storage.get(this._storageKey)
    let state = null
    if (raw) {
      state = JSON.parse(raw)
      if (!state || state.v !== STATE_VERSION) throw localError('state-invalid', '本地保存的签名状态无法识别')
    }
    this._state = state || { v: STATE_VERSION, device: null, share: null, previousShares: [] }
    return this._state
  }

  async _save() {
    await this._storage.set(this._storageKey, JSON.stringify(this._state))
  }

  /** The stored state without secrets: { deviceId, signerId, enrolled, publicKey }. */
  async status() {
    const state = await this._load()
    return {
      deviceId: state.device ? state.device.id : null,
      signerId: state.device ? state.device.signerId : null,
      enrolled: Boolean(state.share),
      publicKey: state.share ? state.share.public_key : null,
    }
  }

  /** Forget this phone's binding and share (the server keeps them until a new activation). */
  async reset() {
    this._state = { v: STATE_VERSION, device: null, share: null, previousShares: [] }
    this._unwrap = null
    if (typeof this._storage.remove === 'function') await this._storage.remove(this._storageKey)
    else await this._save()
  }

  /** Drop the cached unwrap key: auto-sign then needs the PIN again. */
  forgetUnwrap() {
    this._unwrap = null
    this._autoSignUntil = 0
  }

  _shares(state) {
    if (!state.share) throw localError('not-enrolled', '这台手机还没有签名密钥，请先设置 PIN 完成密钥生成')
    return {
      current: crypto.PhoneShare.fromJSON(state.share),
      previous: (state.previousShares || []).map((s) => crypto.PhoneShare.fromJSON(s)),
    }
  }

  // --- HTTP ----------------------------------------------------------------------------------

  /**
   * One request to the appliance; the parsed JSON answer (or { mediaType, data } for binary).
   * `path` starts with "/api/v1/..."; device-signed unless `signed: false`.
   */
  async request(method, path, { json, raw, query, signed = true, retryClock = true } = {}) {
    const body = raw !== undefined ? toBytes(raw) : json !== undefined ? utf8Encode(JSON.stringify(json)) : null
    const qs = buildQuery(query)
    const target = this._prefix + path + (qs ? `?${qs}` : '')
    const headers = { Accept: 'application/json, application/problem+json' }
    if (body && body.length) headers['Content-Type'] = 'application/json'
    if (signed) {
      const state = await this._load()
      if (!state.device) throw localError('not-activated', '这台手机尚未激活，请先输入激活码')
      await prepareRandom(512, this._wx)
      Object.assign(headers, signing.deviceHeaders({
        method,
        target,
        body: body || new Uint8Array(0),
        deviceId: state.device.id,
        privateKey: state.device.privateKey,
        publicKey: fromHex(state.device.publicKey),
        timestamp: Math.floor((this._now() + this._clockOffset) / 1000),
      }))
    }
    const res = await this._transport.request({ method, url: this._origin + target, headers, body: body && body.length ? body : undefined })
    if (res.status >= 400) {
      const error = this._problem(res)
      const serverTime = Date.parse(res.headers.date || '')
      if (signed && retryClock && error.code === 'request-expired' && !Number.isNaN(serverTime)) {
        // the phone's clock is off: sign again with the server's time (nothing was done)
        this._clockOffset = serverTime - this._now()
        return this.request(method, path, { json, raw, query, signed, retryClock: false })
      }
      throw error
    }
    return this._parse(res)
  }

  _problem(res) {
    let problem = null
    try {
      problem = messages.parseJson(utf8Decode(res.body))
    } catch (e) {
      problem = null
    }
    return MedsignError.fromProblem(res.status, problem)
  }

  _parse(res) {
    if (res.status === 204 || !res.body || res.body.length === 0) return null
    const type = (res.headers['content-type'] || '').toLowerCase()
    if (type.includes('json')) return messages.parseJson(utf8Decode(res.body))
    const binary = { mediaType: res.headers['x-medsign-media-type'] || type || 'application/octet-stream', data: res.body }
    if (res.headers['x-medsign-signed'] !== undefined) binary.signed = res.headers['x-medsign-signed'] === 'true'
    return binary
  }

  _mobile(method, path, options) {
    return this.request(method, MOBILE + path, options)
  }

  // --- activation and enrollment -------------------------------------------------------------

  /** Bind this phone to the signer of a one-time activation code (a new device key). */
  async activate(code, { deviceName = this._deviceName } = {}) {
    const state = await this._load()
    await prepareRandom(256, this._wx)
    const key = crypto.generateKeyPair()
    const answer = await this.request('POST', `${MOBILE}/activate`, {
      signed: false,
      json: { code: String(code).trim(), device_public_key: base64.encode(crypto.spki(key.publicKey)), device_name: deviceName },
    })
    this._state = {
      ...state,
      device: { id: answer.device.id, signerId: answer.signer.id, privateKey: key.privateKey, publicKey: toHex(key.publicKey) },
      share: null, // a share belongs to the device it was made on
      previousShares: [],
    }
    this._unwrap = null
    await this._save()
    return answer
  }

  /**
   * Co-keygen with the PIN the user chose, then the co-signature of the enrollment's proof of
   * possession: the answer carries the certificate.  The new share is stored before the
   * enrollment co-sign, so an interrupted enrollment keeps the key it made.
   */
  async enroll(pin) {
    await prepareRandom(1024, this._wx)
    const keygen = new crypto.PhoneKeygen(pin)
    const opened = await this._mobile('POST', '/keys', { json: {} })
    const commit = keygen.commit(messages.decode(opened.message, 'keygen.offer'))
    const answer = await this._send(opened.session, commit)
    const share = keygen.finish(messages.decode(answer.message, 'keygen.result'))
    const state = await this._load()
    this._state = { ...state, share: share.toJSON(), previousShares: [] }
    await this._save()
    const done = await this._cosign(answer.next, { pin })
    return { ...done, keyId: answer.key_id }
  }

  /** This phone, its signer's keys and certificate, PIN attempts left. */
  me() {
    return this._mobile('GET', '/me')
  }

  // --- tasks and signing ---------------------------------------------------------------------

  /** The signer's tasks: pending (default), waiting, signed, rejected, cancelled, expired or all. */
  async tasks({ status = 'pending' } = {}) {
    const answer = await this._mobile('GET', '/tasks', { query: { status } })
    return answer.items
  }

  /** One task with its documents. */
  task(taskId) {
    return this._mobile('GET', `/tasks/${idPart(taskId)}`)
  }

  /** A document of a task, to show before signing: { mediaType, data: Uint8Array }. */
  document(taskId, index) {
    return this._mobile('GET', `/tasks/${idPart(taskId)}/documents/${Number(index)}`)
  }

  /**
   * The validation result of a task's document as it is now (signed or partially signed): the
   * same JSON as POST /api/v1/verify -- { format: 'pdf', valid, signatures, document_timestamps }
   * for a PAdES request, { format: 'cms', valid, signers } for CMS.
   */
  documentVerification(taskId, index) {
    return this._mobile('GET', `/tasks/${idPart(taskId)}/documents/${Number(index)}/verification`)
  }

  /**
   * A task's document as it is now (for PAdES the PDF with every signature so far) and its
   * validation result: { mediaType, data: Uint8Array, signed, verification }.
   */
  async viewDocument(taskId, index) {
    const path = `/tasks/${idPart(taskId)}/documents/${Number(index)}`
    const res = await this._mobile('GET', `${path}/current`)
    const verification = await this.documentVerification(taskId, index)
    return { mediaType: res.mediaType, data: res.data, signed: res.signed, verification }
  }

  /** Decline / reject a task with a reason (its request ends). */
  reject(taskId, reason) {
    return this._mobile('POST', `/tasks/${idPart(taskId)}/reject`, { json: { reason } })
  }

  /**
   * Sign one task or a batch (1 to 500 documents) in one confirmation: { pin } or, inside an
   * auto-sign window, { auto: true }.  `expectedDigests` (hex or bytes, in the order of the
   * answer's items) are the e values the phone computed itself, when it can.
   */
  async sign(taskIds, { pin, auto = false, expectedDigests } = {}) {
    const ids = Array.isArray(taskIds) ? taskIds : [taskIds]
    if (!auto && (pin === undefined || pin === null)) throw localError('pin-required', '请输入 PIN 码')
    if (auto) this._cachedUnwrap() // fail before the server opens a session
    const opened = await this._mobile('POST', '/sign', { json: { tasks: ids, auto_sign: Boolean(auto) } })
    const answer = await this._cosign(opened, { pin: auto ? undefined : pin, auto, expectedDigests })
    return { ...answer, items: opened.items }
  }

  // --- auto-sign ("免密签名") ----------------------------------------------------------------

  /**
   * Authorize PIN-less co-signing for `minutes` and at most `maxCount` tasks.  The phone opens
   * its share in that window with the unwrap key of its latest PIN check, kept in memory only:
   * sign once with the PIN in this session of the mini program first.
   */
  /**
   * Authorize PIN-less co-signing for `minutes` and `maxCount` tasks.  The server checks the
   * PIN and answers the unwrap key, which this client keeps in memory for the window.
   */
  async grantAutoSign({ minutes, maxCount, pin }) {
    if (typeof pin !== 'string') throw localError('pin-required', '开启免密签名需要输入 PIN')
    const state = await this._load()
    const { current } = this._shares(state)
    const grant = await this._mobile('POST', '/auto-sign', {
      json: { minutes, max_count: maxCount, pin_proof: toHex(crypto.pinProof(pin, current.salt)) },
    })
    if (typeof grant.unwrap !== 'string') throw localError('protocol', '免密签名授权缺少解密密钥')
    this._unwrap = fromHex(grant.unwrap)
    delete grant.unwrap
    const until = Date.parse(grant.not_after || '')
    this._autoSignUntil = Number.isNaN(until) ? 0 : until - this._clockOffset
    return grant
  }

  async autoSignGrants() {
    const answer = await this._mobile('GET', '/auto-sign')
    return answer.items
  }

  async revokeAutoSign(grantId) {
    const grant = await this._mobile('DELETE', `/auto-sign/${idPart(grantId)}`)
    this.forgetUnwrap()
    return grant
  }

  _cachedUnwrap() {
    if (this._autoSignUntil && this._now() > this._autoSignUntil) this.forgetUnwrap()
    if (!this._unwrap) throw localError('no-unwrap-key', '免密签名需要先在本次打开小程序后输入一次 PIN 签名')
    return this._unwrap
  }

  // --- PIN -----------------------------------------------------------------------------------

  /**
   * Change the PIN: the server checks the old one (a wrong one counts) and prepares the new
   * one; the phone re-wraps its share.  The old wrap is kept until the new PIN was used once.
   */
  async changePin(oldPin, newPin) {
    const state = await this._load()
    const { current, previous } = this._shares(state)
    const answer = await this._mobile('POST', '/pin', {
      json: {
        old_pin_proof: toHex(crypto.pinProof(oldPin, current.salt)),
        new_pin_proof: toHex(crypto.pinProof(newPin, current.salt)),
      },
    })
    await prepareRandom(256, this._wx)
    const unwrap = fromHex(answer.unwrap)
    const newUnwrap = fromHex(answer.new_unwrap)
    let opened = null
    for (const share of [current, ...previous]) {
      try {
        share.open(unwrap)
        opened = share
        break
      } catch (e) { /* try the next wrap */ }
    }
    if (!opened) throw localError('pin-error', '本机保存的签名密钥分量无法用服务器返回的密钥打开')
    const rewrapped = opened.rewrap(unwrap, newUnwrap)
    this._state = { ...state, share: rewrapped.toJSON(), previousShares: [opened.toJSON()] }
    await this._save()
    return { changed: true }
  }

  // --- QR login and QR signing ---------------------------------------------------------------

  /** What a scanned QR code carries: { type: 'qr', session } or { type: 'activate', code }. */
  static parseQr(text) {
    const value = String(text || '').trim()
    let m = /^medsign:\/\/qr\?(?:.*&)?session=([0-9a-fA-F-]{36})(?:&|$)/.exec(value)
    if (m) return { type: 'qr', session: m[1].toLowerCase() }
    m = /^medsign:\/\/activate\?(?:.*&)?code=([0-9A-Za-z-]{1,64})(?:&|$)/.exec(value)
    if (m) return { type: 'activate', code: m[1] }
    if (/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(value)) return { type: 'qr', session: value.toLowerCase() }
    return null
  }

  /** The phone scanned a QR code: claim the session; what the PC asks (purpose login or sign). */
  qrScan(sessionId) {
    return this._mobile('POST', `/qr/${idPart(sessionId)}/scan`, { json: {} })
  }

  /** Confirm a scanned QR session with the PIN: the co-signature that logs in or signs. */
  async qrConfirm(sessionId, { pin } = {}) {
    if (pin === undefined || pin === null) throw localError('pin-required', '请输入 PIN 码')
    const opened = await this._mobile('POST', `/qr/${idPart(sessionId)}/confirm`, { json: {} })
    return this._cosign(opened, { pin })
  }

  // --- message center ------------------------------------------------------------------------

  async messages({ unread = false } = {}) {
    const answer = await this._mobile('GET', '/messages', { query: unread ? { unread: 'true' } : {} })
    return answer.items
  }

  markRead(messageId) {
    return this._mobile('POST', `/messages/${Number(messageId)}/read`)
  }

  /**
   * Register the signer's handwritten signature: `drawing` is `HandwritingCapture#toJSON()`
   * ({width, height, strokes}); the server renders it (PNG/SVG) for visible signatures.
   */
  saveHandwriting(drawing) {
    return this._mobile('POST', '/handwriting', { json: drawing })
  }

  // --- co-sign sessions ----------------------------------------------------------------------

  _send(session, message) {
    return this._mobile('POST', `/sessions/${idPart(session)}`, { raw: messages.encode(message) })
  }

  async _cosign(opened, { pin, auto = false, expectedDigests } = {}) {
    const state = await this._load()
    const { current, previous } = this._shares(state)
    const offer = messages.decode(opened.message, 'cosign.offer')
    if (offer.require_pin && (pin === undefined || pin === null)) throw localError('pin-required', '请输入 PIN 码')
    const cosigner = new crypto.PhoneCosigner(current, {
      pin: offer.require_pin ? pin : undefined,
      unwrap: offer.require_pin ? undefined : this._cachedUnwrap(),
      shares: previous,
    })
    const expected = expectedDigests ? expectedDigests.map((d) => (typeof d === 'string' ? fromHex(d) : toBytes(d))) : undefined
    await prepareRandom(96 * offer.digests.length + 512, this._wx)
    let message = cosigner.commit(offer, expected)
    for (let round = 1; ; round++) {
      const answer = await this._send(opened.session, message)
      const response = messages.decode(answer.message, 'cosign.response')
      await prepareRandom(96 * offer.digests.length + 512, this._wx)
      const next = cosigner.finish(response)
      if (response.unwrap) this._unwrap = response.unwrap
      if (next.type === 'cosign.commit') {
        if (round >= MAX_ROUNDS) throw localError('out-of-order', '协同签名重试次数过多')
        message = next
        continue
      }
      const final = await this._send(opened.session, next)
      const signatures = cosigner.close(messages.decode(final.message, 'cosign.done'))
      if (response.unwrap && cosigner.openedWith === current && previous.length) {
        // the new PIN was accepted: the old wrap is of no use any more
        this._state = { ...state, previousShares: [] }
        await this._save()
      }
      return { ...final, session: opened.session, kind: opened.kind, signatures: signatures.map(toHex) }
    }
  }
}

module.exports = { PhoneClient, splitBaseUrl, buildQuery }
