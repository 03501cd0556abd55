'use strict'
// The JS phone views a signed PDF and its validation result on a REAL medsign server.  Skipped
// unless MEDSIGN_URL is set; driven by tests/peers/test_miniprogram_sdk.py
// (test_js_phone_views_signed_documents), which starts the server, binds a doctor and creates
// one PAdES sign request titled "PDF 处方", then checks what this side saw against pdfsign.
//
// Environment: MEDSIGN_URL, MEDSIGN_ACTIVATION_CODE, MEDSIGN_STATE_FILE, MEDSIGN_RESULT_FILE
// (as in integration.test.js).

const { describe, it, before } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const sdk = require('../src/index')
const { base64 } = require('../src/bytes')

const URL_ = process.env.MEDSIGN_URL
const PIN = '246810'
const results = {}

function save() {
  if (process.env.MEDSIGN_RESULT_FILE) fs.writeFileSync(process.env.MEDSIGN_RESULT_FILE, JSON.stringify(results, null, 2))
}

describe('the JS phone views signed documents', { skip: URL_ ? false : 'MEDSIGN_URL is not set' }, () => {
  let client
  let task

  before(async () => {
    client = new sdk.PhoneClient({
      baseUrl: URL_, transport: sdk.fetchTransport(), storage: sdk.fileStorage(process.env.MEDSIGN_STATE_FILE), deviceName: 'node 查看文档',
    })
    await client.activate(process.env.MEDSIGN_ACTIVATION_CODE)
    await client.enroll(PIN)
    task = (await client.tasks()).find((t) => t.title === 'PDF 处方')
    assert.ok(task, 'the PAdES task is pending')
  })

  it('shows the unsigned PDF: no signature yet, not valid', async () => {
    const view = await client.viewDocument(task.id, 0)
    assert.equal(view.mediaType, 'application/pdf')
    assert.equal(view.signed, false)
    assert.deepEqual(view.verification, { format: 'pdf', valid: false, signatures: [], document_timestamps: [] })
    results.unsigned = base64.encode(view.data)
    save()
  })

  it('after signing: the PDF with the signature, and its validation result', async () => {
    await client.sign([task.id], { pin: PIN })
    const view = await client.viewDocument(task.id, 0)
    assert.equal(view.signed, true)
    assert.equal(view.verification.format, 'pdf')
    assert.equal(view.verification.valid, true, JSON.stringify(view.verification))
    const [signature] = view.verification.signatures
    assert.equal(signature.ok, true)
    assert.equal(signature.field, 'medsign-step-1')
    assert.equal(signature.algorithm, 'sm2sign_with_sm3')
    assert.deepEqual(await client.documentVerification(task.id, 0), view.verification)
    results.signed = base64.encode(view.data)
    results.verification = view.verification
    results.done = true
    save()
  })

  it("another signer's or an unknown task is not found", async () => {
    await assert.rejects(client.documentVerification('tk_unknown', 0), (e) => e.status === 404 && e.code === 'not-found')
    await assert.rejects(client.documentVerification(task.id, 5), (e) => e.status === 404)
  })
})
