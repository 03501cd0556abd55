'use strict'
/** @medsign/miniprogram-sdk: the phone side of medsign for WeChat mini programs (and node). */

const { PhoneClient } = require('./client')
const { MedsignError, ProtocolError } = require('./errors')
const { wxTransport, fetchTransport } = require('./transport')
const { wxStorage, fileStorage, memoryStorage } = require('./storage')
const { HandwritingCapture } = require('./handwriting')
const { setRandomSource, prepareRandom, installWeChatRandom } = require('./random')
const crypto = require('./crypto')
const messages = require('./messages')
const signing = require('./signing')
const bytes = require('./bytes')

module.exports = {
  PhoneClient,
  MedsignError,
  ProtocolError,
  wxTransport,
  fetchTransport,
  wxStorage,
  fileStorage,
  memoryStorage,
  HandwritingCapture,
  setRandomSource,
  prepareRandom,
  installWeChatRandom,
  crypto,
  messages,
  signing,
  bytes,
}
