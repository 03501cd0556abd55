'use strict'
// The request signing (appliance/api/device_signing.py), the client's HTTP handling, the
// transports, storages and the random source, with fakes instead of a server.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const sdk = require('../src/index')
const { base64, fromHex, toHex, utf8Decode, utf8Encode } = require('../src/bytes')
const signing = require('../src/signing')
const random = require('../src/random')

// captured before any test runs: loading the SDK must not load sm-crypto yet (a mini program
// installs its random source first, see installWeChatRandom)
const smCryptoLoadedWithIndex = Object.keys(require.cache).some((file) => file.includes(`${path.sep}sm-crypto${path.sep}`))

test('requiring the SDK does not load sm-crypto before the first cryptographic operation', () => {
  assert.equal(smCryptoLoadedWithIndex, false)
  assert.equal(typeof sdk.installWeChatRandom, 'function')
})

test('string to sign: the same six lines as appliance.api.device_signing.string_to_sign', () => {
  // produced with: from appliance.api import device_signing
  //   device_signing.string_to_sign(method="post", decoded_path="/api/v1/mobile/tasks/任务 1",
  //       query="b=2&a=x+y&a=%E4%B8%AD&c&z=~-._!*'()", body=b'{"a":1}', timestamp="1764121200",
  //       nonce="abcdefghijklmnop").decode()
  const expected = [
    'POST',
    '/api/v1/mobile/tasks/%E4%BB%BB%E5%8A%A1%201',
    'a=%E4%B8%AD&a=x%20y&b=2&c=&z=~-._%21%2A%27%28%29',
    'd646a76e347ce7c1a4c11acff67604928ccfaf03fc2e4fb8faaf5b2b1227605a',
    '1764121200',
    'abcdefghijklmnop',
  ].join('\n')
  const got = signing.stringToSign({
    method: 'post',
    target: "/api/v1/mobile/tasks/%E4%BB%BB%E5%8A%A1%201?b=2&a=x+y&a=%E4%B8%AD&c&z=~-._!*'()",
    body: utf8Encode('{"a":1}'),
    timestamp: '1764121200',
    nonce: 'abcdefghijklmnop',
  })
  assert.equal(utf8Decode(got), expected)
  // a path sent undecoded gives the same canonical form
  assert.equal(signing.canonicalPath('/api/v1/mobile/tasks/任务 1'), '/api/v1/mobile/tasks/%E4%BB%BB%E5%8A%A1%201')
  assert.equal(signing.canonicalQuery(''), '')
})

test('device headers: the Authorization verifies over the string to sign', () => {
  const key = sdk.crypto.generateKeyPair()
  const body = utf8Encode('{"tasks":["t1"]}')
  const headers = signing.deviceHeaders({
    method: 'POST', target: '/api/v1/mobile/sign', body, deviceId: 'dv_abc', privateKey: key.privateKey, publicKey: key.publicKey, timestamp: 1764121200,
  })
  const m = /^MEDSIGN-DEVICE-SM2 deviceId=(dv_abc), signature=([A-Za-z0-9+/=]+)$/.exec(headers.Authorization)
  assert.ok(m, headers.Authorization)
  assert.equal(headers['X-Medsign-Timestamp'], '1764121200')
  assert.match(headers['X-Medsign-Nonce'], /^[A-Za-z0-9_-]{16,64}$/)
  const message = signing.stringToSign({ method: 'POST', target: '/api/v1/mobile/sign', body, timestamp: '1764121200', nonce: headers['X-Medsign-Nonce'] })
  assert.ok(sdk.crypto.verifyMessage(key.publicKey, message, base64.decode(m[2])))
  assert.notEqual(signing.requestNonce(), signing.requestNonce())
})

/** A transport that answers from a list of handlers and records the requests. */
function fakeTransport(handlers) {
  const seen = []
  return {
    seen,
    async request(req) {
      seen.push(req)
      const handler = handlers.shift()
      if (!handler) throw new Error(`unexpected request ${req.method} ${req.url}`)
      return handler(req)
    },
  }
}

const json = (status, value, headers = {}) => ({
  status,
  headers: { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json', ...headers },
  body: utf8Encode(JSON.stringify(value)),
})

async function activatedClient(handlers, options = {}) {
  const transport = fakeTransport([
    (req) => {
      const sent = JSON.parse(utf8Decode(req.body))
      assert.equal(req.url, 'https://medsign.example/prefix/api/v1/mobile/activate')
      assert.equal(req.headers.Authorization, undefined)
      assert.equal(sent.code, 'ABCD-EFGH')
      assert.equal(toHex(base64.decode(sent.device_public_key)).slice(0, 52), '3059301306072a8648ce3d020106082a811ccf5501822d034200')
      return json(201, { device: { id: 'dv_phone1', signer_id: 7 }, signer: { id: 7 } })
    },
    ...handlers,
  ])
  const storage = sdk.memoryStorage()
  const client = new sdk.PhoneClient({ baseUrl: 'https://medsign.example/prefix/', transport, storage, ...options })
  await client.activate(' ABCD-EFGH ')
  return { client, transport, storage }
}

test('client: activation stores the device; problems become MedsignError with attemptsLeft', async () => {
  const { client, transport, storage } = await activatedClient([
    () => json(403, { type: 'https://medsign.local/problems/pin-wrong', title: 'PIN 码错误', status: 403, detail: 'PIN 码错误，还可尝试 9 次', code: 'pin-wrong', attempts_left: 9 }),
    () => ({ status: 502, headers: { 'content-type': 'text/html' }, body: utf8Encode('<html>bad gateway</html>') }),
    () => json(200, { items: [{ id: 't1' }], auto_sign: [] }),
    () => ({ status: 200, headers: { 'content-type': 'application/octet-stream', 'x-medsign-media-type': 'text/plain' }, body: utf8Encode('处方') }),
  ])
  const state = JSON.parse(storage.data.state)
  assert.equal(state.device.id, 'dv_phone1')
  assert.deepEqual(await client.status(), { deviceId: 'dv_phone1', signerId: 7, enrolled: false, publicKey: null })
  await assert.rejects(client.me(), (e) => e instanceof sdk.MedsignError && e.status === 403 && e.code === 'pin-wrong' && e.attemptsLeft === 9 && e.detail.includes('9'))
  await assert.rejects(client.me(), (e) => e.status === 502 && e.code === 'http-502' && e.attemptsLeft === null)
  assert.deepEqual(await client.tasks(), [{ id: 't1' }])
  const doc = await client.document('t1', 0)
  assert.equal(doc.mediaType, 'text/plain')
  assert.equal(utf8Decode(doc.data), '处方')
  const [, me, , tasks, document] = transport.seen
  assert.equal(me.url, 'https://medsign.example/prefix/api/v1/mobile/me')
  assert.match(me.headers.Authorization, /^MEDSIGN-DEVICE-SM2 deviceId=dv_phone1, signature=/)
  assert.equal(me.body, undefined)
  assert.equal(tasks.url, 'https://medsign.example/prefix/api/v1/mobile/tasks?status=pending')
  assert.equal(document.url, 'https://medsign.example/prefix/api/v1/mobile/tasks/t1/documents/0')
  // the signature covers the prefixed path as the server sees it
  const pub = fromHex(state.device.publicKey)
  const sig = base64.decode(/signature=(\S+)$/.exec(tasks.headers.Authorization)[1])
  const message = signing.stringToSign({ method: 'GET', target: '/prefix/api/v1/mobile/tasks?status=pending', timestamp: tasks.headers['X-Medsign-Timestamp'], nonce: tasks.headers['X-Medsign-Nonce'] })
  assert.ok(sdk.crypto.verifyMessage(pub, message, sig))
})

test('client: a request-expired answer is retried once with the server clock', async () => {
  const serverNow = Date.parse('2026-03-01T08:00:00Z')
  const { client, transport } = await activatedClient([
    () => json(401, { code: 'request-expired', status: 401 }, { date: new Date(serverNow).toUTCString() }),
    (req) => {
      assert.ok(Math.abs(Number(req.headers['X-Medsign-Timestamp']) - serverNow / 1000) < 5)
      return json(200, { device: {}, keys: [] })
    },
    () => json(401, { code: 'request-expired', status: 401 }, { date: new Date(serverNow).toUTCString() }),
    () => json(401, { code: 'request-expired', status: 401 }, { date: new Date(serverNow).toUTCString() }),
    () => json(401, { code: 'replay', status: 401 }),
  ], { now: () => serverNow - 3600 * 1000 })
  assert.deepEqual(await client.me(), { device: {}, keys: [] })
  assert.notEqual(transport.seen[1].headers['X-Medsign-Nonce'], transport.seen[2].headers['X-Medsign-Nonce'])
  await assert.rejects(client.me(), (e) => e.code === 'request-expired') // only one retry
  await assert.rejects(client.me(), (e) => e.code === 'replay') // never retried
})

test('client: local refusals before any request', async () => {
  const transport = fakeTransport([])
  const client = new sdk.PhoneClient({ baseUrl: 'http://127.0.0.1:8080', transport, storage: sdk.memoryStorage() })
  await assert.rejects(client.me(), (e) => e.code === 'not-activated' && e.status === 0)
  const { client: activated } = await activatedClient([])
  await assert.rejects(activated.sign(['t1'], {}), (e) => e.code === 'pin-required')
  await assert.rejects(activated.sign(['t1'], { auto: true }), (e) => e.code === 'no-unwrap-key')
  await assert.rejects(activated.changePin('1234', '5678'), (e) => e.code === 'not-enrolled')
  assert.throws(() => new sdk.PhoneClient({ baseUrl: 'ftp://x', transport, storage: sdk.memoryStorage() }), TypeError)
})

test('parseQr: QR login and activation URIs', () => {
  const { PhoneClient } = sdk
  assert.deepEqual(PhoneClient.parseQr('medsign://qr?session=0B8A4D5E-1234-4abc-9def-0123456789ab'), { type: 'qr', session: '0b8a4d5e-1234-4abc-9def-0123456789ab' })
  assert.deepEqual(PhoneClient.parseQr('medsign://activate?code=ABCD0123EFGH4567'), { type: 'activate', code: 'ABCD0123EFGH4567' })
  assert.equal(PhoneClient.parseQr('https://example.com'), null)
})

test('wxTransport: ArrayBuffer in and out, no data on GET, failures are network-error', async () => {
  const calls = []
  const wx = {
    request(options) {
      calls.push(options)
      if (options.url.endsWith('/fail')) return options.fail({ errMsg: 'request:fail timeout' })
      return options.success({ statusCode: 200, header: { 'Content-Type': 'application/json' }, data: utf8Encode('{"ok":true}').buffer })
    },
  }
  const transport = sdk.wxTransport(wx)
  const body = utf8Encode('{"x":1}')
  const res = await transport.request({ method: 'POST', url: 'https://h/a', headers: { A: 'b' }, body: body.subarray(0, 7) })
  assert.equal(res.status, 200)
  assert.equal(res.headers['content-type'], 'application/json')
  assert.equal(utf8Decode(res.body), '{"ok":true}')
  assert.equal(calls[0].responseType, 'arraybuffer')
  assert.notEqual(calls[0].dataType, 'json')
  assert.ok(calls[0].data instanceof ArrayBuffer)
  assert.equal(utf8Decode(new Uint8Array(calls[0].data)), '{"x":1}')
  await transport.request({ method: 'GET', url: 'https://h/b', headers: {} })
  assert.equal('data' in calls[1], false)
  await assert.rejects(transport.request({ method: 'GET', url: 'https://h/fail' }), (e) => e.code === 'network-error')
})

test('fetchTransport: headers lower-cased, bytes both ways', async () => {
  const seen = []
  const transport = sdk.fetchTransport({
    fetch: async (url, init) => {
      seen.push([url, init])
      return new Response(utf8Encode('{"a":1}'), { status: 201, headers: { 'Content-Type': 'application/json', 'X-Medsign-Media-Type': 'text/plain' } })
    },
  })
  const res = await transport.request({ method: 'POST', url: 'http://h/x', headers: { 'Content-Type': 'application/json' }, body: utf8Encode('{}') })
  assert.equal(res.status, 201)
  assert.equal(res.headers['x-medsign-media-type'], 'text/plain')
  assert.equal(utf8Decode(res.body), '{"a":1}')
  assert.equal(utf8Decode(seen[0][1].body), '{}')
  const failing = sdk.fetchTransport({ fetch: async () => { throw new TypeError('connect ECONNREFUSED') } })
  await assert.rejects(failing.request({ method: 'GET', url: 'http://h/' }), (e) => e.code === 'network-error')
})

test('storages: wx storage and a 0600 JSON file', async () => {
  const store = {}
  const wx = {
    getStorageSync: (k) => (k in store ? store[k] : ''),
    setStorageSync: (k, v) => { store[k] = v },
    removeStorageSync: (k) => { delete store[k] },
  }
  const ws = sdk.wxStorage(wx)
  assert.equal(ws.get('state'), null)
  ws.set('state', '{"v":1}')
  assert.equal(store['medsign:state'], '{"v":1}')
  assert.equal(ws.get('state'), '{"v":1}')
  ws.remove('state')
  assert.equal(ws.get('state'), null)

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medsign-sdk-'))
  try {
    const file = path.join(dir, 'phone.json')
    const fsStore = sdk.fileStorage(file)
    assert.equal(fsStore.get('state'), null)
    fsStore.set('state', 'x')
    fsStore.set('other', 'y')
    assert.equal(sdk.fileStorage(file).get('state'), 'x')
    assert.equal(fs.statSync(file).mode & 0o777, 0o600)
    fsStore.remove('state')
    assert.equal(fsStore.get('state'), null)
    assert.equal(fsStore.get('other'), 'y')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('random: a custom source, and the wx.getRandomValues pool where no synchronous CSPRNG exists', async () => {
  random.setRandomSource((n) => new Uint8Array(n).fill(7))
  try {
    assert.equal(toHex(random.randomBytes(3)), '070707')
  } finally {
    random.setRandomSource(null)
  }
  assert.equal(random.randomBytes(32).length, 32)
  // simulate a mini-program runtime: no globalThis.crypto, no node crypto
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'crypto')
  const savedVersions = process.versions
  let served = 0
  const wx = {
    getRandomValues({ length, success }) {
      served += length
      const out = new Uint8Array(length)
      require('node:crypto').randomFillSync(out)
      setTimeout(() => success({ randomValues: out.buffer }), 0)
    },
  }
  Object.defineProperty(globalThis, 'crypto', { value: undefined, configurable: true, writable: true })
  Object.defineProperty(process, 'versions', { value: {}, configurable: true })
  try {
    // the SDK's node-crypto probe runs once; force it to look again
    delete require.cache[require.resolve('../src/random')]
    const fresh = require('../src/random')
    assert.throws(() => fresh.randomBytes(16), /prepareRandom|entropy/)
    await fresh.installWeChatRandom(wx, 64)
    assert.ok(served >= 64)
    const a = fresh.randomBytes(32)
    const b = fresh.randomBytes(32)
    assert.notEqual(toHex(a), toHex(b))
    assert.equal(typeof globalThis.crypto.getRandomValues, 'function') // the shim sm-crypto can load with
    const arr = new Uint8Array(8)
    globalThis.crypto.getRandomValues(arr)
    const left = fresh.poolSize()
    await fresh.prepareRandom(left + 100, wx)
    assert.ok(fresh.poolSize() >= left + 100)
  } finally {
    Object.defineProperty(process, 'versions', { value: savedVersions, configurable: true })
    if (saved) Object.defineProperty(globalThis, 'crypto', saved)
    delete require.cache[require.resolve('../src/random')]
  }
})
