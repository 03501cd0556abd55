'use strict'
/**
 * Handwritten-signature capture on a mini-program <canvas>.
 *
 * Feed the canvas's touch events (mini-program shape: e.touches[0].x / .y in canvas pixels,
 * e.timeStamp in ms, optional touches[0].force); get normalized strokes:
 *
 *   { "width": 600, "height": 300, "strokes": [[{ "x": 0.1234, "y": 0.5, "t": 0, "p": 0.5 }, ...], ...] }
 *
 * x and y are in [0, 1] relative to the canvas size, t is ms since the first point of the
 * signature, p is the pressure in [0, 1] (0.5 when the device reports none).  Duplicate points
 * are dropped and a stroke is thinned: a point closer than `minDistance` canvas pixels to the
 * last kept one is skipped (the stroke's last point is always kept).
 *
 *   <canvas type="2d" id="sig" bindtouchstart="start" bindtouchmove="move" bindtouchend="end"
 *           bindtouchcancel="end" disable-scroll="true" />
 *   const pad = new HandwritingCapture({ width: 600, height: 300 })
 *   Page({ start: (e) => pad.onTouchStart(e), move: (e) => pad.onTouchMove(e), end: (e) => pad.onTouchEnd(e) })
 */

const DEFAULT_PRESSURE = 0.5

const clamp01 = (v) => (v < 0 ? 0 : v > 1 ? 1 : v)
const round = (v, digits) => {
  const f = 10 ** digits
  return Math.round(v * f) / f
}

function touchOf(e) {
  if (!e) return null
  const list = (e.touches && e.touches.length ? e.touches : null) || (e.changedTouches && e.changedTouches.length ? e.changedTouches : null)
  const t = list ? list[0] : null
  if (!t) return null
  const x = typeof t.x === 'number' ? t.x : t.clientX
  const y = typeof t.y === 'number' ? t.y : t.clientY
  if (typeof x !== 'number' || typeof y !== 'number' || !Number.isFinite(x) || !Number.isFinite(y)) return null
  return { x, y, force: t.force }
}

class HandwritingCapture {
  /**
   * @param {object} options
   * @param {number} options.width   the canvas width in the touch events' unit (px)
   * @param {number} options.height  the canvas height
   * @param {number} [options.minDistance=2] thinning threshold in canvas pixels
   * @param {() => number} [options.now] a clock for events without timeStamp
   */
  constructor({ width, height, minDistance = 2, now = () => Date.now() } = {}) {
    this.resize(width, height)
    this.minDistance = minDistance
    this._now = now
    this.clear()
  }

  resize(width, height) {
    if (!(width > 0) || !(height > 0)) throw new RangeError('the canvas width and height must be positive')
    this.width = width
    this.height = height
  }

  clear() {
    this._strokes = []
    this._current = null
    this._pending = null
    this._t0 = null
    this._lastT = 0
  }

  /** Remove the last stroke. */
  undo() {
    if (this._current) {
      this._current = null
      this._pending = null
    }
    this._strokes.pop()
  }

  isEmpty() {
    return this._strokes.every((s) => s.length === 0) && !(this._current && this._current.length)
  }

  get strokeCount() {
    return this._strokes.length
  }

  get pointCount() {
    return this._strokes.reduce((n, s) => n + s.length, 0)
  }

  _point(e) {
    const touch = touchOf(e)
    if (!touch) return null
    const stamp = typeof e.timeStamp === 'number' && Number.isFinite(e.timeStamp) ? e.timeStamp : this._now()
    if (this._t0 === null) this._t0 = stamp
    const t = Math.max(this._lastT, Math.round(stamp - this._t0))
    this._lastT = t
    const force = typeof touch.force === 'number' && touch.force > 0 ? clamp01(touch.force) : DEFAULT_PRESSURE
    return {
      px: touch.x,
      py: touch.y,
      point: { x: round(clamp01(touch.x / this.width), 4), y: round(clamp01(touch.y / this.height), 4), t, p: round(force, 3) },
    }
  }

  _keep(p) {
    const stroke = this._current
    const last = stroke[stroke.length - 1]
    if (last && last.x === p.point.x && last.y === p.point.y) return // a duplicate
    stroke.push(p.point)
    this._lastKept = p
    this._pending = null
  }

  onTouchStart(e) {
    if (this._current) this._finish()
    const p = this._point(e)
    if (!p) return
    this._current = []
    this._strokes.push(this._current)
    this._keep(p)
  }

  onTouchMove(e) {
    if (!this._current) return this.onTouchStart(e)
    const p = this._point(e)
    if (!p) return undefined
    const last = this._lastKept
    if (last && Math.hypot(p.px - last.px, p.py - last.py) < this.minDistance) {
      this._pending = p // too close: keep it only if the stroke ends here
      return undefined
    }
    this._keep(p)
    return undefined
  }

  onTouchEnd(e) {
    if (!this._current) return
    const p = this._point(e)
    if (p) {
      this._pending = p
    }
    this._finish()
  }

  _finish() {
    if (this._pending) this._keep(this._pending)
    this._current = null
    this._pending = null
    this._lastKept = null
  }

  // aliases matching the mini-program event names
  touchstart(e) { return this.onTouchStart(e) }

  touchmove(e) { return this.onTouchMove(e) }

  touchend(e) { return this.onTouchEnd(e) }

  touchcancel(e) { return this.onTouchEnd(e) }

  /** The normalized strokes (copies). */
  get strokes() {
    return this._strokes.filter((s) => s.length).map((s) => s.map((p) => ({ ...p })))
  }

  toJSON() {
    return { width: this.width, height: this.height, strokes: this.strokes }
  }

  /** Draw the strokes on a canvas 2D context of the given size (default: the capture's). */
  drawTo(ctx, { width = this.width, height = this.height, lineWidth = 3, color = '#000' } = {}) {
    ctx.lineCap = 'round'
    ctx.lineJoin = 'round'
    ctx.strokeStyle = color
    for (const stroke of this.strokes) {
      ctx.beginPath()
      stroke.forEach((p, i) => {
        ctx.lineWidth = lineWidth * (0.5 + p.p)
        if (i === 0) ctx.moveTo(p.x * width, p.y * height)
        else ctx.lineTo(p.x * width, p.y * height)
      })
      if (stroke.length === 1) ctx.lineTo(stroke[0].x * width + 0.1, stroke[0].y * height)
      ctx.stroke()
    }
  }
}

module.exports = { HandwritingCapture, DEFAULT_PRESSURE }
