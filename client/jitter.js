// The player's core: a jitter buffer with a resampler, pure (no Web Audio, no timers), so the
// AudioWorklet, the ScriptProcessor fallback and the tests all run the same code.
//
// Network audio arrives in bursts of `message_seconds` with jitter; the sound card takes it in
// small, perfectly regular quanta. The buffer holds enough between the two that a late message
// never leaves the card without samples, and no more, so latency stays low:
//
// - Start (and restart after an underrun) once `target` seconds are buffered; anything buffered
//   beyond that at start is skipped, so joining with the server's 1 s burst starts at once with
//   the target latency.
// - Adaptive mode (default) measures the arrival jitter (spread of arrival time minus stream
//   time over the last 30 s) and keeps the mean depth at half a message + one pull + jitter +
//   a safety margin. After an underrun it restarts at that depth, which now includes the stall
//   that caused the underrun; it comes down again only slowly (below), so stalls that recur every
//   minute or so are ridden out after the first.
//   Fixed mode keeps the mean depth at the configured target.
// - The depth is steered by playing at most 0.2 % (3.5 cents, below what ears notice) faster or
//   slower, which also absorbs the drift between the server's clock and the sound card's
//   (typically 10-100 ppm: without this an hours-long session would underrun or grow latency).
//   The speed is left alone for `confidenceSeconds` after each (re)start, so the first seconds
//   play exactly the samples sent.
// - Far too much buffered (a suspended tab, a stalled main thread): skip ahead to the target.
//
// Resampling from the stream's rate (read from the audio headers; 44.1 kHz from streamer's server)
// to the context rate uses a 32-tap Kaiser-windowed sinc (beta 9, cutoff 0.94 x the lower Nyquist
// frequency, 256 phases linearly interpolated): error below -95 dB for tones up to 15 kHz and
// -69 dB at 17 kHz, 44.1 -> 48 kHz (cubic Hermite: -31 dB at 8 kHz, linear: -19 dB). Riffusion's
// spectrogram stops at 10 kHz. About 3 million multiply-adds a second in stereo at 48 kHz: nothing
// for an audio thread. When the rates are equal and no correction runs, samples pass through
// untouched, so a context at the stream's rate plays exactly the samples the server sent.

export const DEFAULT_JITTER_SETTINGS = Object.freeze({
  adaptive: true,
  /** Depth buffered before playing starts, until `confidenceSeconds` of measurement. In fixed mode, the depth kept. */
  startSeconds: 0.4,
  minTargetSeconds: 0.12,
  maxTargetSeconds: 4.0,
  /** Kept on top of the measured jitter (adaptive mode). */
  marginSeconds: 0.04,
  jitterWindowSeconds: 30,
  /** After each (re)start: no speed correction, and no target below `startSeconds`, for this long. */
  confidenceSeconds: 10,
  /** Depth above target + this: skip ahead to the target (audible, so only for gross excess). */
  overflowSeconds: 2.0,
  /** Largest speed change used to steer the depth: 0.002 = 0.2 % = 3.5 cents. */
  maxSpeedDeviation: 0.002,
  /** Mean depth may stray this far from its setpoint before the speed is corrected. */
  deadbandSeconds: 0.04,
  /** Time constant of the mean depth the correction looks at. */
  depthAveragingSeconds: 5,
  capacitySeconds: 12,
});

const HALF_TAPS = 16; // taps on each side of the read position
const TAPS = 2 * HALF_TAPS;
const PHASES = 256;
const KAISER_BETA = 9;
const CUTOFF = 0.94;

function besselI0(x) {
  // Power series; converges fast for the arguments a Kaiser window uses (|x| <= beta).
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

/**
 * Interpolation kernels for fractional positions 0, 1/PHASES, ... 1 (PHASES + 1 rows of TAPS).
 * Row p weights samples k - HALF_TAPS + 1 ... k + HALF_TAPS for the position k + p / PHASES.
 */
export function sincTable(cutoff) {
  const table = new Float32Array((PHASES + 1) * TAPS);
  const norm = besselI0(KAISER_BETA);
  for (let p = 0; p <= PHASES; p++) {
    const u = p / PHASES;
    let sum = 0;
    for (let j = 0; j < TAPS; j++) {
      const x = j - HALF_TAPS + 1 - u;
      const r = x / HALF_TAPS;
      const window = Math.abs(r) <= 1 ? besselI0(KAISER_BETA * Math.sqrt(1 - r * r)) / norm : 0;
      const arg = Math.PI * cutoff * x;
      const sinc = x === 0 ? 1 : Math.sin(arg) / arg;
      const h = cutoff * sinc * window;
      table[p * TAPS + j] = h;
      sum += h;
    }
    for (let j = 0; j < TAPS; j++) table[p * TAPS + j] /= sum; // unity gain at DC
  }
  return table;
}

export class JitterBuffer {
  /**
   * @param {{sourceRate: number, outputRate: number, channels?: number, settings?: object}} options
   *   sourceRate: the stream's rate (from the audio headers); outputRate: the AudioContext's.
   */
  constructor({ sourceRate, outputRate, channels = 2, settings = {} }) {
    this.settings = { ...DEFAULT_JITTER_SETTINGS, ...settings };
    this.sourceRate = sourceRate;
    this.outputRate = outputRate;
    this.channels = channels;
    this.baseStep = sourceRate / outputRate; // source frames per output frame at speed 1
    this.table = sincTable(CUTOFF * Math.min(1, outputRate / sourceRate));
    this.capacity = Math.ceil(this.settings.capacitySeconds * sourceRate) + 4 * TAPS;
    this.ring = Array.from({ length: channels }, () => new Float32Array(this.capacity));
    this.kernel = new Float32Array(TAPS);
    this.clear();
  }

  /** Forget all audio and measurements (the player stopped). */
  clear() {
    this.written = 0; // frames ever written (the ring's write counter)
    this.read = 0; // read counter, fractional while resampling
    this.segments = []; // [{at: counter, position: stream position}] where positions jump
    this.nextPosition = null;
    this.state = "idle"; // idle (never played) | buffering | playing
    this.speed = 1;
    this.messageFrames = 0;
    this.pullFrames = 0; // the largest pull so far, in source frames
    this.underruns = 0;
    this.underrunFrames = 0;
    this.droppedFrames = 0;
    this.playedFrames = 0;
    this.playingSince = null;
    this.meanDepth = null;
    this.lastPullSeconds = null;
    this.resetJitter();
  }

  /** Start measuring the jitter afresh: the relation of arrival and stream time has changed. */
  resetJitter() {
    this.arrivals = []; // [{at: seconds, offset: seconds}] of live messages
    this.jitter = 0; // spread of the offsets, seconds
    this.measuringSince = null;
  }

  get depthFrames() {
    return Math.max(0, this.written - Math.floor(this.read) - HALF_TAPS);
  }

  /** Frames wanted before (re)starting. */
  get targetFrames() {
    const s = this.settings;
    const rate = this.sourceRate;
    if (!s.adaptive) return s.startSeconds * rate;
    return this.clampTarget(this.setpointFrames() + this.messageFrames / 2);
  }

  clampTarget(frames) {
    const s = this.settings;
    return Math.min(s.maxTargetSeconds * this.sourceRate, Math.max(s.minTargetSeconds * this.sourceRate, frames));
  }

  /** The mean depth the speed correction steers to. */
  setpointFrames(nowSeconds = this.lastPullSeconds) {
    const s = this.settings;
    const rate = this.sourceRate;
    // Started at the target, the depth saws between target - phase and target - phase + message,
    // the phase being when the next message happened to arrive: its mean is the target, +- half a
    // message (so the fixed mode's deadband is wider by that much).
    if (!s.adaptive) return s.startSeconds * rate;
    const cautious = s.startSeconds * rate - this.messageFrames / 2;
    const measured = this.messageFrames / 2 + this.pullFrames + (this.jitter + s.marginSeconds) * rate;
    const confident =
      this.measuringSince !== null &&
      nowSeconds !== null &&
      nowSeconds - this.measuringSince >= s.confidenceSeconds &&
      this.playingSince !== null &&
      nowSeconds - this.playingSince >= s.confidenceSeconds;
    const wanted = Math.max(measured, s.minTargetSeconds * rate - this.messageFrames / 2);
    return confident ? wanted : Math.max(wanted, cautious);
  }

  /**
   * Append one network message. `planar` holds one Float32Array per stream channel (a mono stream
   * plays on both outputs). `measure`: false for the join burst, whose arrival says nothing about
   * the network's jitter.
   */
  push(position, planar, arrivalSeconds, measure = true) {
    const frames = planar[0].length;
    if (frames === 0) return;
    const free = this.capacity - 4 * TAPS - (this.written - Math.floor(this.read));
    if (frames > free) this.dropOldest(frames - free);
    if (this.nextPosition !== position) this.segments.push({ at: this.written, position });
    const start = this.written % this.capacity;
    const first = Math.min(frames, this.capacity - start);
    for (let c = 0; c < this.channels; c++) {
      const source = planar[Math.min(c, planar.length - 1)];
      const ring = this.ring[c];
      ring.set(first === frames ? source : source.subarray(0, first), start);
      if (first < frames) ring.set(source.subarray(first), 0);
    }
    this.written += frames;
    this.nextPosition = position + frames;
    this.messageFrames = frames;
    if (measure) this.measureArrival(arrivalSeconds);
  }

  measureArrival(arrivalSeconds) {
    const window = this.settings.jitterWindowSeconds;
    if (this.measuringSince === null) this.measuringSince = arrivalSeconds;
    this.arrivals.push({ at: arrivalSeconds, offset: arrivalSeconds - this.written / this.sourceRate });
    let stale = 0;
    while (stale < this.arrivals.length && this.arrivals[stale].at < arrivalSeconds - window) stale++;
    if (stale) this.arrivals.splice(0, stale);
    let lo = Infinity;
    let hi = -Infinity;
    for (const { offset } of this.arrivals) {
      if (offset < lo) lo = offset;
      if (offset > hi) hi = offset;
    }
    this.jitter = hi - lo; // spread of arrival lateness over the window
  }

  dropOldest(frames) {
    this.read += frames;
    this.droppedFrames += frames;
  }

  /** Stream position of the sample at a read counter (fractional counters give fractional positions). */
  positionAt(counter) {
    const whole = Math.floor(counter);
    let segment = null;
    for (const s of this.segments) {
      if (s.at <= whole) segment = s;
      else break;
    }
    return segment === null ? null : segment.position + (counter - segment.at);
  }

  /** Stream position being output at the read head, or null while not playing. */
  get playPosition() {
    return this.state === "playing" ? this.positionAt(this.read) : null;
  }

  /**
   * Fill `outputs` (one Float32Array per output channel, `frames` long) with the next samples at
   * the output rate. Returns where the output came from, for the test tap:
   * {position (stream position of output frame 0, null if silent), step, silentFrom (first
   * frame without data, or -1), jumped (a stream position jump inside)}.
   */
  pull(outputs, frames, nowSeconds) {
    this.lastPullSeconds = nowSeconds;
    this.pullFrames = Math.max(this.pullFrames, frames * this.baseStep);
    this.startIfReady(nowSeconds);
    const info = { position: this.playPosition, step: this.baseStep * this.speed, silentFrom: -1, jumped: false };
    const readBefore = this.read;
    let i = 0;
    if (this.state === "playing") i = this.render(outputs, frames);
    if (i < frames) {
      info.silentFrom = i;
      for (const out of outputs) out.fill(0, i);
      if (this.state === "playing") this.underrun();
      if (this.state !== "idle") this.underrunFrames += frames - i;
    }
    this.playedFrames += i;
    info.jumped = this.segments.some((s) => s.at > readBefore && s.at < this.read);
    this.pruneSegments();
    if (this.state === "playing") this.steer(nowSeconds, frames);
    return info;
  }

  /** Render as many frames as the buffer allows; returns how many. */
  render(outputs, frames) {
    const step = this.baseStep * this.speed;
    const capacity = this.capacity;
    const channels = Math.min(outputs.length, this.channels);
    const table = this.table;
    const kernel = this.kernel;
    let read = this.read;
    let i = 0;
    for (; i < frames; i++) {
      const k = Math.floor(read);
      if (k + HALF_TAPS >= this.written) break;
      const frac = read - k;
      if (frac === 0 && step === 1) {
        const index = k % capacity;
        for (let c = 0; c < channels; c++) outputs[c][i] = this.ring[c][index];
      } else {
        const phase = frac * PHASES;
        const p = Math.floor(phase);
        const w = phase - p;
        const row0 = p * TAPS;
        const row1 = row0 + TAPS;
        for (let j = 0; j < TAPS; j++) kernel[j] = table[row0 + j] + w * (table[row1 + j] - table[row0 + j]);
        const base = k - HALF_TAPS + 1;
        for (let c = 0; c < channels; c++) {
          const ring = this.ring[c];
          let sum = 0;
          let index = base % capacity;
          if (index < 0) index += capacity;
          for (let j = 0; j < TAPS; j++) {
            sum += kernel[j] * ring[index];
            if (++index === capacity) index = 0;
          }
          outputs[c][i] = sum;
        }
      }
      read += step;
    }
    for (let c = channels; c < outputs.length; c++) outputs[c].set(outputs[channels - 1].subarray(0, i));
    this.read = read;
    return i;
  }

  startIfReady(nowSeconds) {
    if (this.state === "playing") return;
    const target = this.targetFrames;
    if (this.depthFrames < target || this.depthFrames === 0) return;
    const excess = Math.floor(this.depthFrames - target);
    if (excess > 0) this.dropOldest(excess); // start at the target latency, not the burst's
    this.state = "playing";
    this.playingSince = nowSeconds;
    this.meanDepth = this.depthFrames - this.messageFrames / 2; // the mean of the sawtooth ahead
    this.speed = 1;
  }

  underrun() {
    this.state = "buffering";
    this.underruns += 1;
    this.speed = 1;
    this.playingSince = null;
  }

  /** Steer the mean depth to its setpoint by a small speed change; skip gross excess. */
  steer(nowSeconds, frames) {
    const s = this.settings;
    const rate = this.sourceRate;
    const depth = this.depthFrames;
    const target = this.targetFrames;
    if (depth > target + s.overflowSeconds * rate) {
      this.dropOldest(Math.floor(depth - target));
      this.meanDepth = this.depthFrames - this.messageFrames / 2;
      return;
    }
    const alpha = 1 - Math.exp(-frames / this.outputRate / s.depthAveragingSeconds);
    this.meanDepth += alpha * (depth - this.meanDepth);
    // Right after a start the mean depth depends on the arrival phase and the jitter is not yet
    // known: leave the speed alone until the measurement means something.
    if (nowSeconds - this.playingSince < s.confidenceSeconds) return;
    const error = this.meanDepth - this.setpointFrames(nowSeconds);
    const deadband = s.deadbandSeconds * rate + (s.adaptive ? 0 : this.messageFrames / 2);
    if (this.speed === 1) {
      if (error > deadband) this.speed = 1 + s.maxSpeedDeviation;
      else if (error < -deadband) this.speed = 1 - s.maxSpeedDeviation;
    } else if ((this.speed > 1 && error <= 0) || (this.speed < 1 && error >= 0)) {
      this.speed = 1;
    }
  }

  pruneSegments() {
    const whole = Math.floor(this.read) - HALF_TAPS;
    while (this.segments.length > 1 && this.segments[1].at <= whole) this.segments.shift();
  }

  /** Numbers for the readouts (seconds, counts). */
  stats() {
    const rate = this.sourceRate;
    return {
      state: this.state,
      depthSeconds: this.depthFrames / rate,
      targetSeconds: this.targetFrames / rate,
      jitterSeconds: this.jitter,
      underruns: this.underruns,
      underrunSeconds: this.underrunFrames / this.outputRate,
      droppedSeconds: this.droppedFrames / rate,
      playedSeconds: this.playedFrames / this.outputRate,
      speed: this.speed,
      position: this.playPosition,
      receivedPosition: this.nextPosition,
    };
  }
}
