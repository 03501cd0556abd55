'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')

const { HandwritingCapture } = require('../src/handwriting')

// mini-program canvas touch events: touches[0].x/.y in canvas px, timeStamp in ms
const ev = (x, y, timeStamp, force) => ({ timeStamp, touches: [{ x, y, ...(force === undefined ? {} : { force }) }], changedTouches: [{ x, y }] })
const end = (x, y, timeStamp) => ({ timeStamp, touches: [], changedTouches: [{ x, y }] })

test('normalizes to [0, 1], t from the first point, default pressure 0.5', () => {
  const pad = new HandwritingCapture({ width: 400, height: 200 })
  pad.onTouchStart(ev(100, 50, 1000))
  pad.onTouchMove(ev(200, 100, 1016))
  pad.onTouchMove(ev(400, 200, 1033, 0.8))
  pad.onTouchEnd(end(400, 200, 1040))
  pad.onTouchStart(ev(-10, 250, 1500, 3)) // outside the canvas: clamped; force above 1: 1
  pad.onTouchEnd(end(-10, 250, 1510))
  assert.deepEqual(pad.toJSON(), {
    width: 400,
    height: 200,
    strokes: [
      [{ x: 0.25, y: 0.25, t: 0, p: 0.5 }, { x: 0.5, y: 0.5, t: 16, p: 0.5 }, { x: 1, y: 1, t: 33, p: 0.8 }],
      [{ x: 0, y: 1, t: 500, p: 1 }],
    ],
  })
  assert.equal(JSON.stringify(pad), '{"width":400,"height":200,"strokes":[[{"x":0.25,"y":0.25,"t":0,"p":0.5},{"x":0.5,"y":0.5,"t":16,"p":0.5},{"x":1,"y":1,"t":33,"p":0.8}],[{"x":0,"y":1,"t":500,"p":1}]]}')
  assert.equal(pad.strokeCount, 2)
  assert.equal(pad.pointCount, 4)
})

test('drops duplicates, thins points closer than minDistance, keeps the stroke end', () => {
  const pad = new HandwritingCapture({ width: 1000, height: 1000, minDistance: 3 })
  pad.onTouchStart(ev(10, 10, 0))
  pad.onTouchMove(ev(10, 10, 5)) // duplicate
  pad.onTouchMove(ev(11, 11, 10)) // 1.4 px: thinned
  pad.onTouchMove(ev(12, 10, 15)) // 2 px: thinned
  pad.onTouchMove(ev(20, 10, 20)) // kept
  pad.onTouchMove(ev(21, 10, 25)) // thinned, but it is where the stroke ends
  pad.onTouchEnd({ timeStamp: 30, touches: [], changedTouches: [] })
  const [stroke] = pad.strokes
  assert.deepEqual(stroke.map((p) => [p.x, p.y, p.t]), [[0.01, 0.01, 0], [0.02, 0.01, 20], [0.021, 0.01, 25]])
  // a tap is a one-point stroke; the end event at the same place adds nothing
  pad.onTouchStart(ev(500, 500, 100))
  pad.onTouchEnd(end(500, 500, 110))
  assert.deepEqual(pad.strokes[1], [{ x: 0.5, y: 0.5, t: 100, p: 0.5 }])
})

test('time never goes backwards; undo, clear, resize, events without touches', () => {
  let clock = 5000
  const pad = new HandwritingCapture({ width: 100, height: 100, now: () => clock })
  pad.onTouchStart({ touches: [{ x: 1, y: 1 }] }) // no timeStamp: the clock
  clock = 4000 // a clock that jumps back
  pad.onTouchMove({ touches: [{ x: 50, y: 50 }] })
  pad.onTouchMove({ touches: [] }) // ignored
  pad.onTouchEnd({})
  assert.deepEqual(pad.strokes[0].map((p) => p.t), [0, 0])
  pad.onTouchMove(ev(10, 10, 6000)) // a move without a start starts a stroke
  pad.touchend(end(90, 90, 6100))
  assert.equal(pad.strokeCount, 2)
  pad.undo()
  assert.equal(pad.strokeCount, 1)
  pad.clear()
  assert.ok(pad.isEmpty())
  assert.deepEqual(pad.toJSON(), { width: 100, height: 100, strokes: [] })
  assert.throws(() => pad.resize(0, 10), RangeError)
  pad.resize(200, 50)
  pad.touchstart(ev(100, 25, 1))
  pad.touchcancel(end(100, 25, 2))
  assert.deepEqual(pad.toJSON().strokes, [[{ x: 0.5, y: 0.5, t: 0, p: 0.5 }]])
})

test('drawTo replays the strokes on a 2D context', () => {
  const pad = new HandwritingCapture({ width: 100, height: 100 })
  pad.onTouchStart(ev(10, 10, 0))
  pad.onTouchMove(ev(90, 90, 10))
  pad.onTouchEnd(end(90, 90, 20))
  const calls = []
  const ctx = new Proxy({}, {
    get: (_t, name) => (...args) => calls.push([name, ...args]),
    set: () => true,
  })
  pad.drawTo(ctx, { width: 200, height: 200 })
  assert.deepEqual(calls.map((c) => c[0]), ['beginPath', 'moveTo', 'lineTo', 'stroke'])
  assert.deepEqual(calls[1].slice(1), [20, 20])
  assert.deepEqual(calls[2].slice(1), [180, 180])
})
