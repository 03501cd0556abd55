'use strict'
/**
 * Errors of the SDK.  One class, MedsignError, for what the server refused (status = the HTTP
 * status, code = the problem document's stable code) and for what the phone refused itself
 * (status = 0, code = one of the keysplit error names below).
 */

class MedsignError extends Error {
  constructor(message, { status = 0, code = 'error', title = '', detail = '', attemptsLeft, problem } = {}) {
    super(message || detail || title || code)
    this.name = 'MedsignError'
    this.status = status
    this.code = code
    this.title = title
    this.detail = detail || message || ''
    // only for pin-wrong: how many PIN attempts remain before the share locks
    this.attemptsLeft = attemptsLeft === undefined ? null : attemptsLeft
    this.problem = problem || null
  }

  /** Build from an RFC 9457 problem document (application/problem+json). */
  static fromProblem(status, problem) {
    const p = problem && typeof problem === 'object' ? problem : {}
    const code = typeof p.code === 'string' ? p.code : `http-${status}`
    return new MedsignError(p.detail || p.title || `HTTP ${status}`, {
      status,
      code,
      title: p.title || '',
      detail: p.detail || '',
      attemptsLeft: typeof p.attempts_left === 'number' ? p.attempts_left : undefined,
      problem: p,
    })
  }
}

/**
 * The phone refused a protocol message (keysplit/README.md section 9).  code is one of
 * malformed-message, invalid-point, invalid-scalar, out-of-order, replay, digest-mismatch,
 * signature-rejected, pin-error (the stored share does not open with the unwrap key),
 * no-unwrap-key (a PIN-less session without a cached key).
 */
class ProtocolError extends MedsignError {
  constructor(code, message) {
    super(message, { status: 0, code })
    this.name = 'ProtocolError'
  }
}

const protocolError = (code) => (message) => new ProtocolError(code, message)

module.exports = {
  MedsignError,
  ProtocolError,
  malformed: protocolError('malformed-message'),
  invalidPoint: protocolError('invalid-point'),
  invalidScalar: protocolError('invalid-scalar'),
  outOfOrder: protocolError('out-of-order'),
  replay: protocolError('replay'),
  digestMismatch: protocolError('digest-mismatch'),
  signatureRejected: protocolError('signature-rejected'),
  pinError: protocolError('pin-error'),
  noUnwrapKey: protocolError('no-unwrap-key'),
}
