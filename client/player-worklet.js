// The audio thread's side of the player: an AudioWorkletProcessor around the jitter buffer.
// Messages in: {type: "audio", position, planar, live}, {type: "discontinuity"}, {type: "clear"},
// {type: "rate", sourceRate} (the stream's rate from the audio headers).
// Messages out: {type: "report", ...} about every 46 ms (16 render quanta) and, in test mode, {type:
// "tap", quanta, samples}: exactly what this node output, with the stream position of each quantum.

import { JitterBuffer } from "./jitter.js";

const REPORT_EVERY_QUANTA = 16;

class StreamPlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { sourceRate, settings, tap } = options.processorOptions;
    // `sampleRate` and `currentTime` are globals of the AudioWorkletGlobalScope.
    this.settings = settings;
    this.buffer = this.jitterBuffer(sourceRate);
    this.tap = tap ? { quanta: [], samples: [[], []] } : null;
    this.quantum = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  jitterBuffer(sourceRate) {
    return new JitterBuffer({ sourceRate, outputRate: sampleRate, channels: 2, settings: this.settings });
  }

  receive(message) {
    if (message.type === "rate") {
      // A stream at another rate (a reconnection): start afresh at it; the same rate changes nothing.
      if (message.sourceRate !== this.buffer.sourceRate) this.buffer = this.jitterBuffer(message.sourceRate);
    } else if (message.type === "audio") this.buffer.push(message.position, message.planar, currentTime, message.live);
    else if (message.type === "discontinuity") this.buffer.resetJitter();
    else if (message.type === "clear") this.buffer.clear();
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const frames = out[0].length;
    const startTime = currentTime;
    const info = this.buffer.pull(out, frames, startTime);
    if (this.tap !== null) this.record(out, frames, info);
    if (++this.quantum % REPORT_EVERY_QUANTA === 0) this.report(startTime, info);
    return true;
  }

  record(out, frames, info) {
    this.tap.quanta.push({ ...info, frames });
    for (let c = 0; c < 2; c++) this.tap.samples[c].push(out[Math.min(c, out.length - 1)].slice(0, frames));
    if (this.tap.quanta.length < REPORT_EVERY_QUANTA) return;
    const samples = this.tap.samples.map((parts) => {
      const joined = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const part of parts) {
        joined.set(part, at);
        at += part.length;
      }
      return joined;
    });
    this.port.postMessage({ type: "tap", quanta: this.tap.quanta, samples }, samples.map((s) => s.buffer));
    this.tap = { quanta: [], samples: [[], []] };
  }

  report(startTime, info) {
    this.port.postMessage({
      type: "report",
      ...this.buffer.stats(),
      contextTime: startTime, // when output frame 0 of this quantum plays, in context time
      position: info.position, // its stream position (null: not playing)
      sourceFramesPerSecond: info.step * sampleRate,
    });
  }
}

registerProcessor("stream-player", StreamPlayerProcessor);
