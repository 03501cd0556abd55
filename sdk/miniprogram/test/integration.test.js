'use strict'
// The JS phone against a REAL medsign server.  Skipped unless MEDSIGN_URL is set; driven by
// tests/peers/test_miniprogram_sdk.py, which starts the server, binds a doctor, creates the sign
// requests through the HMAC API and checks the results on the server side afterwards.
//
// Environment:
//   MEDSIGN_URL              http://127.0.0.1:PORT
//   MEDSIGN_ACTIVATION_CODE  a one-time activation code of an ACTIVE doctor
//   MEDSIGN_APP_KEY_ID / MEDSIGN_APP_SECRET  the hospital backend's credential (this test opens
//                            the QR-login session as the PC would; the phone never has it)
//   MEDSIGN_STATE_FILE       where the phone keeps its state (fileStorage)
//   MEDSIGN_RESULT_FILE      JSON written for the pytest side
// Sign requests expected (by title): "单张处方", "批量处方 01".."批量处方 20", "免密签名处方",
// "驳回处方", "新PIN处方".

const { describe, it, before } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const sdk = require('../src/index')
const { base64, base64url, utf8Encode } = require('../src/bytes')

const URL_ = process.env.MEDSIGN_URL
const PIN = '246810'
const NEW_PIN = '135790'
const results = {}

function save() {
  if (process.env.MEDSIGN_RESULT_FILE) fs.writeFileSync(process.env.MEDSIGN_RESULT_FILE, JSON.stringify(results, null, 2))
}

/** The hospital backend (MEDSIGN-HMAC-SM3), only to open the QR session as the PC. */
async function backend(method, path, body) {
  const data = body === undefined ? new Uint8Array(0) : utf8Encode(JSON.stringify(body))
  const timestamp = String(Math.floor(Date.now() / 1000))
  const nonce = sdk.signing.requestNonce()
  const secret = base64url.decode(process.env.MEDSIGN_APP_SECRET)
  const message = sdk.signing.stringToSign({ method, target: path, body: data, timestamp, nonce })
  const signature = base64.encode(sdk.crypto.hmacSm3(secret, message))
  const res = await fetch(URL_ + path, {
    method,
    body: data.length ? data : undefined,
    headers: {
      'Content-Type': 'application/json',
      Authorization: `MEDSIGN-HMAC-SM3 keyId=${process.env.MEDSIGN_APP_KEY_ID}, signature=${signature}`,
      'X-Medsign-Timestamp': timestamp,
      'X-Medsign-Nonce': nonce,
    },
  })
  const answer = await res.json()
  assert.ok(res.status < 300, JSON.stringify(answer))
  return answer
}

function newClient() {
  return new sdk.PhoneClient({
    baseUrl: URL_, transport: sdk.fetchTransport(), storage: sdk.fileStorage(process.env.MEDSIGN_STATE_FILE), deviceName: 'node 测试手机',
  })
}

describe('the JS phone against a real medsign server', { skip: URL_ ? false : 'MEDSIGN_URL is not set' }, () => {
  let client
  let byTitle

  before(() => {
    client = newClient()
  })

  it('activates with the one-time code', async () => {
    const answer = await client.activate(process.env.MEDSIGN_ACTIVATION_CODE)
    assert.match(answer.device.id, /^dv_/)
    results.device_id = answer.device.id
    results.signer_id = answer.signer.id
    save()
    // a code is for one use
    const other = new sdk.PhoneClient({ baseUrl: URL_, transport: sdk.fetchTransport(), storage: sdk.memoryStorage() })
    await assert.rejects(other.activate(process.env.MEDSIGN_ACTIVATION_CODE), (e) => e.status === 400 && e.code === 'activation-failed')
  })

  it('enrolls: co-keygen with the PIN, then the certificate', async () => {
    const done = await client.enroll(PIN)
    assert.ok(done.certificate && done.certificate.id, JSON.stringify(done))
    results.certificate_id = done.certificate.id
    results.public_key = (await client.status()).publicKey
    save()
    const me = await client.me()
    assert.equal(me.certificate.id, done.certificate.id)
    assert.deepEqual(me.pin, { attempts_left: 10, locked: false })
    assert.deepEqual(me.keys.map((k) => k.status), ['active'])
    assert.equal(me.keys[0].public_key, results.public_key)
  })

  it('lists the tasks the backend created', async () => {
    const tasks = await client.tasks()
    byTitle = Object.fromEntries(tasks.map((t) => [t.title, t]))
    assert.equal(tasks.length, 24, tasks.map((t) => t.title).join(', '))
    const single = byTitle['单张处方']
    const preview = await client.document(single.id, 0)
    assert.equal(new TextDecoder().decode(preview.data), '处方 RX-0001：阿莫西林胶囊 0.25g×24 粒\n')
    assert.equal((await client.task(single.id)).documents[0].sm3, single.documents[0].sm3)
  })

  it('signs one task with the PIN', async () => {
    const answer = await client.sign([byTitle['单张处方'].id], { pin: PIN })
    assert.deepEqual(answer.tasks, [{ id: byTitle['单张处方'].id, status: 'signed' }])
    assert.equal(answer.signatures.length, 1)
    results.single = { task: byTitle['单张处方'].id, request: byTitle['单张处方'].request_id }
    save()
  })

  it('signs a batch of 20 tasks in one confirmation', async () => {
    const batch = Object.keys(byTitle).filter((x) => x.startsWith('批量处方')).sort().map((x) => byTitle[x])
    assert.equal(batch.length, 20)
    const started = Date.now()
    results.batch = { tasks: batch.map((x) => x.id), requests: batch.map((x) => x.request_id) }
    const answer = await client.sign(batch.map((x) => x.id), { pin: PIN })
    assert.equal(answer.signatures.length, 20)
    assert.equal(answer.items.length, 20)
    assert.ok(answer.tasks.every((x) => x.status === 'signed'))
    // every signature is an SM2 signature of the digest the server registered
    const pub = sdk.bytes.fromHex(results.public_key)
    answer.items.forEach((item, i) => assert.ok(sdk.crypto.verifyDigest(pub, sdk.bytes.fromHex(item.digest), sdk.bytes.fromHex(answer.signatures[i]))))
    results.batch.ms = Date.now() - started
    save()
  })

  it('a wrong PIN is refused with the attempts left, and changes nothing', async () => {
    const task = byTitle['免密签名处方']
    await assert.rejects(client.sign([task.id], { pin: '000000' }), (e) => {
      assert.ok(e instanceof sdk.MedsignError)
      assert.equal(e.status, 403)
      assert.equal(e.code, 'pin-wrong')
      assert.equal(e.attemptsLeft, 9)
      return true
    })
    assert.equal((await client.task(task.id)).status, 'pending')
    assert.equal((await client.me()).pin.attempts_left, 9)
  })

  it('auto-sign: a grant, then a PIN-less signature', async () => {
    client.forgetUnwrap()
    await assert.rejects(client.sign([byTitle['免密签名处方'].id], { auto: true }), (e) => e.code === 'no-unwrap-key')
    await assert.rejects(client.grantAutoSign({ minutes: 10, maxCount: 1, pin: '000000' }), (e) => e.status === 403 && e.code === 'pin-wrong')
    const grant = await client.grantAutoSign({ minutes: 10, maxCount: 1, pin: PIN })
    assert.equal(grant.status, 'active')
    const answer = await client.sign([byTitle['免密签名处方'].id], { auto: true })
    assert.deepEqual(answer.tasks, [{ id: byTitle['免密签名处方'].id, status: 'signed' }])
    const signed = await client.task(byTitle['免密签名处方'].id)
    assert.equal(signed.auto_sign_id, grant.id)
    const grants = await client.autoSignGrants()
    assert.equal(grants[0].used_count, 1)
    results.auto = { task: signed.id, request: signed.request_id, grant: grant.id }
    save()
    assert.equal((await client.me()).pin.attempts_left, 10) // the grant's right PIN reset the counter
  })

  it('rejects a task with a reason', async () => {
    const task = byTitle['驳回处方']
    const answer = await client.reject(task.id, '剂量超出说明书范围，请医生确认')
    assert.equal(answer.status, 'rejected')
    results.rejected = { task: task.id, request: task.request_id }
    save()
  })

  it('changes the PIN; the state survives a restart of the mini program', async () => {
    await client.changePin(PIN, NEW_PIN)
    client = newClient() // a new page: everything comes back from storage
    const answer = await client.sign([byTitle['新PIN处方'].id], { pin: NEW_PIN })
    assert.equal(answer.tasks[0].status, 'signed')
    assert.equal((await client.me()).pin.attempts_left, 10) // the right PIN reset the counter
    const state = JSON.parse(fs.readFileSync(process.env.MEDSIGN_STATE_FILE, 'utf8'))
    assert.deepEqual(JSON.parse(state.state).previousShares, []) // the new PIN was used: old wrap gone
    await assert.rejects(client.sign([byTitle['驳回处方'].id], { pin: NEW_PIN }), (e) => e.status === 409 && e.code === 'not-pending')
    results.new_pin = { task: byTitle['新PIN处方'].id, request: byTitle['新PIN处方'].request_id }
    save()
  })

  it('QR login: the PC opens a session, the phone scans and confirms with the PIN', async () => {
    const session = await backend('POST', '/api/v1/qr-sessions', { purpose: 'login' })
    const parsed = sdk.PhoneClient.parseQr(session.uri)
    assert.deepEqual(parsed, { type: 'qr', session: session.id })
    const scanned = await client.qrScan(parsed.session)
    assert.equal(scanned.purpose, 'login')
    const done = await client.qrConfirm(parsed.session, { pin: NEW_PIN })
    assert.deepEqual(done.qr, { id: session.id, status: 'confirmed' })
    results.qr_session = session.id
    save()
  })

  it('the message center', async () => {
    const items = await client.messages()
    assert.ok(items.length >= 1)
    const unread = await client.messages({ unread: true })
    await client.markRead(unread[0].id)
    assert.equal((await client.messages({ unread: true })).length, unread.length - 1)
    await assert.rejects(client.markRead(999999), (e) => e.status === 404)
  })

  it('a handwritten signature: captured strokes, rendered by the server', async () => {
    let t = 1000
    const pad = new sdk.HandwritingCapture({ width: 300, height: 150, now: () => t })
    const touch = (x, y) => ({ touches: [{ x, y, force: 0.7 }], timeStamp: t })
    pad.onTouchStart(touch(20, 100))
    for (let i = 1; i <= 40; i++) { t += 16; pad.onTouchMove(touch(20 + i * 6, 100 - (i % 10) * 5)) }
    pad.onTouchEnd({ touches: [], timeStamp: t })
    const stored = await client.saveHandwriting(pad.toJSON())
    assert.equal(stored.width, 300)
    assert.ok(stored.points >= 10)
    const png = await client.request('GET', '/api/v1/mobile/handwriting', { query: { format: 'png' } })
    assert.equal(png.mediaType, 'image/png')
    assert.equal(png.data[0], 0x89) // the PNG signature
  })

  it('a replayed request is refused by the server', async () => {
    // the device signature and nonce of one request, sent twice
    const seen = []
    const recording = {
      async request(req) {
        seen.push(req)
        return sdk.fetchTransport().request(req)
      },
    }
    const spy = new sdk.PhoneClient({ baseUrl: URL_, transport: recording, storage: sdk.fileStorage(process.env.MEDSIGN_STATE_FILE) })
    await spy.me()
    const again = await sdk.fetchTransport().request(seen[0])
    assert.equal(again.status, 401)
    assert.equal(JSON.parse(new TextDecoder().decode(again.body)).code, 'replay')
    results.done = true
    save()
  })
})
