// The main thread's side of the player: the AudioContext (unlocked by the Play button), the
// jitter-buffer node, and where in the stream the listener is now (for the waterfall and the
// now-playing panel).
//
// The stream's rate is the one in the audio headers. The context is asked to run at that rate, so
// the browser's own resampler (if the device runs at another rate) does the conversion and the node
// outputs exactly the samples received; where that is refused, with ?rate=native or ?rate=N, or
// when a reconnection brings another rate (a running context cannot change its rate), the node
// resamples (see jitter.js).
// AudioWorklet needs a secure context (https, or http on localhost): a phone that opens the player
// at http://<laptop-ip>:8765 gets a ScriptProcessorNode running the same jitter buffer on the main
// thread instead (deprecated but present in every browser; larger blocks, so a deeper buffer).

import { JitterBuffer } from "./jitter.js";
import { STREAM_RATE } from "./protocol.js";

const PREROLL_SECONDS = 1.5; // audio kept while not playing, so Play starts at once
const FALLBACK_BLOCK_FRAMES = 4096;

export class Player extends EventTarget {
  /**
   * @param {{contextRate?: number|null, settings?: object, tap?: boolean}} options
   *   contextRate: the AudioContext's rate to ask for (null: the device's own; undefined: the
   *   rate of the audio pushed: the stream's for PCM, 48 kHz for decoded Opus).
   *   settings: jitter buffer settings (jitter.js DEFAULT_JITTER_SETTINGS).
   *   tap: keep a copy of everything output (tests).
   *   worklet: false forces the ScriptProcessor fallback (what an insecure origin gets).
   *   streamPosition: maps a position of the pushed audio to the stream's clock (decoded Opus runs
   *   at 48 kHz; the stream's positions, in now_playing too, at its own rate).
   */
  constructor({
    contextRate = undefined,
    settings = {},
    tap = false,
    worklet = true,
    streamPosition = (position) => position,
  } = {}) {
    super();
    Object.assign(this, { contextRate, settings, tapEnabled: tap, useWorklet: worklet, streamPosition });
    this.streamRate = null; // from the audio headers; null until the first one
    this.context = null;
    this.node = null;
    this.gain = null;
    this.fallback = null; // JitterBuffer on the main thread when AudioWorklet is unavailable
    this.wanted = false; // the listener pressed Play (and not Stop)
    this.ready = false;
    this.settingUp = null;
    this.preroll = [];
    this.report = null;
    this.tapQuanta = [];
    this.tapSamples = [[], []];
    this.volume = 1;
    this.onVisibility = () => {
      if (document.visibilityState === "visible" && this.wanted) this.resumeContext();
    };
  }

  get running() {
    return this.context !== null && this.context.state === "running";
  }

  /**
   * Start playing. Call it synchronously inside the Play button's click handler: mobile Safari
   * only lets a page make sound if the context is created and resumed within the gesture.
   */
  start() {
    this.wanted = true;
    if (this.context === null) {
      this.context = this.createContext();
      this.context.onstatechange = () => this.contextStateChanged();
      document.addEventListener("visibilitychange", this.onVisibility);
    }
    const resumed = this.resumeContext();
    this.unlock();
    this.settingUp ??= this.setup(resumed);
    this.emit("state");
    return this.settingUp;
  }

  /** Stop making sound (the context is suspended, the stream keeps arriving into the preroll). */
  async stop() {
    this.wanted = false;
    this.node?.port?.postMessage({ type: "clear" });
    this.fallback?.clear();
    this.report = null;
    if (this.context !== null) await this.context.suspend();
    this.emit("state");
  }

  setVolume(volume) {
    this.volume = volume;
    if (this.gain !== null) this.gain.gain.setTargetAtTime(volume, this.context.currentTime, 0.02);
  }

  createContext() {
    const Context = globalThis.AudioContext ?? globalThis.webkitAudioContext;
    const options = { latencyHint: "playback" };
    const rate = this.contextRate === undefined ? (this.streamRate ?? STREAM_RATE) : this.contextRate;
    if (rate) {
      try {
        return new Context({ ...options, sampleRate: rate });
      } catch {
        // this browser cannot run a context at that rate: use the device's and resample
      }
    }
    return new Context(options);
  }

  resumeContext() {
    if ("audioSession" in navigator) navigator.audioSession.type = "playback"; // iOS: play with the silent switch on
    return this.context.resume().catch(() => {});
  }

  /** Older iOS unlocks audio only once a buffer has been started inside a gesture. */
  unlock() {
    const silence = this.context.createBuffer(1, 1, this.context.sampleRate);
    const source = this.context.createBufferSource();
    source.buffer = silence;
    source.connect(this.context.destination);
    source.start();
  }

  async setup(resumed) {
    const context = this.context;
    this.gain = context.createGain();
    this.gain.gain.value = this.volume;
    this.gain.connect(context.destination);
    if (this.useWorklet && context.audioWorklet && globalThis.AudioWorkletNode) {
      await context.audioWorklet.addModule(new URL("./player-worklet.js", import.meta.url));
      this.node = new AudioWorkletNode(context, "stream-player", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [2],
        processorOptions: { sourceRate: this.sourceRate(), settings: this.settings, tap: this.tapEnabled },
      });
      this.node.port.onmessage = (event) => this.receive(event.data);
    } else {
      this.setupFallback();
    }
    this.node.connect(this.gain);
    await resumed;
    this.ready = true;
    this.flushPreroll();
    this.emit("state");
  }

  /** The rate the jitter buffer reads at: the stream's, or the guess before its first header. */
  sourceRate() {
    return this.streamRate ?? STREAM_RATE;
  }

  fallbackBuffer() {
    const context = this.context;
    const minimum = FALLBACK_BLOCK_FRAMES / context.sampleRate + 0.2;
    const settings = { ...this.settings, startSeconds: Math.max(this.settings.startSeconds ?? 0.4, minimum) };
    return new JitterBuffer({ sourceRate: this.sourceRate(), outputRate: context.sampleRate, channels: 2, settings });
  }

  setupFallback() {
    const context = this.context;
    this.fallback = this.fallbackBuffer();
    this.node = context.createScriptProcessor(FALLBACK_BLOCK_FRAMES, 1, 2);
    let blocks = 0;
    this.node.onaudioprocess = (event) => {
      const output = event.outputBuffer;
      const channels = [output.getChannelData(0), output.getChannelData(1)];
      const when = event.playbackTime ?? context.currentTime;
      const info = this.fallback.pull(channels, output.length, when);
      if (this.tapEnabled) this.receive({ type: "tap", quanta: [{ ...info, frames: output.length }], samples: channels.map((c) => c.slice()) });
      if (++blocks % 2 === 0) {
        this.receive({ type: "report", ...this.fallback.stats(), contextTime: when, position: info.position, sourceFramesPerSecond: info.step * context.sampleRate });
      }
    };
  }

  /** Audio from the connection ({message, live, gap}). */
  push({ message, live, gap }) {
    if (message.sampleRate !== this.streamRate) this.streamRateChanged(message.sampleRate);
    if (gap) this.post({ type: "discontinuity" });
    if (!this.ready || !this.wanted || !this.running) {
      // Keep the latest audio only: a suspended context would let an unbounded queue pile up.
      this.preroll.push({ message, live: false });
      let frames = this.preroll.reduce((n, item) => n + item.message.frames, 0);
      while (frames - this.preroll[0].message.frames >= PREROLL_SECONDS * message.sampleRate) frames -= this.preroll.shift().message.frames;
      return;
    }
    this.send(message, live);
  }

  /**
   * The first audio header, or a reconnection to a stream at another rate: a jitter buffer made
   * for another rate starts afresh at this one (resampling to the running context's), and audio
   * kept at the old rate is dropped. Listeners (the waterfall) hear of it through a "rate" event.
   */
  streamRateChanged(rate) {
    this.streamRate = rate;
    this.preroll = [];
    this.report = null;
    if (this.fallback !== null && this.fallback.sourceRate !== rate) this.fallback = this.fallbackBuffer();
    this.node?.port?.postMessage({ type: "rate", sourceRate: rate });
    this.emit("rate");
  }

  send(message, live) {
    const { samplePosition: position, planar } = message;
    if (this.fallback !== null) this.fallback.push(position, planar, this.context.currentTime, live);
    else this.node.port.postMessage({ type: "audio", position, planar, live }, planar.map((channel) => channel.buffer));
  }

  post(message) {
    if (this.fallback !== null) {
      if (message.type === "discontinuity") this.fallback.resetJitter();
    } else {
      this.node?.port.postMessage(message);
    }
  }

  flushPreroll() {
    if (!this.ready || !this.running || !this.wanted) return;
    const preroll = this.preroll;
    this.preroll = [];
    for (const { message } of preroll) this.send(message, false);
  }

  contextStateChanged() {
    if (this.context.state === "running") this.flushPreroll();
    else if (this.wanted && document.visibilityState === "visible") this.resumeContext(); // Safari: "interrupted" by a call
    this.emit("state");
  }

  receive(message) {
    if (message.type === "report") {
      this.report = message;
      this.emit("report");
    } else if (message.type === "tap") {
      this.tapQuanta.push(...message.quanta);
      for (let c = 0; c < 2; c++) this.tapSamples[c].push(message.samples[c]);
    }
  }

  /** Context time being heard now (what reaches the speaker, past the output latency). */
  heardContextTime() {
    const context = this.context;
    const stamp = context.getOutputTimestamp?.();
    if (stamp && stamp.performanceTime > 0 && stamp.contextTime > 0) {
      return stamp.contextTime + (performance.now() - stamp.performanceTime) / 1000;
    }
    return context.currentTime - (context.outputLatency || context.baseLatency || 0);
  }

  /** Stream position (in samples at the stream's rate; decoded Opus mapped back to it through
   * ``streamPosition``) being heard now, or null when nothing plays. */
  heardPosition() {
    const report = this.report;
    if (report === null || report.position === null || !this.running) return null;
    return this.streamPosition(report.position + (this.heardContextTime() - report.contextTime) * report.sourceFramesPerSecond);
  }

  /** Readouts: the jitter buffer's numbers plus the output path. */
  stats() {
    if (this.context === null) return null;
    const outputSeconds = Math.max(0, this.context.currentTime - this.heardContextTime());
    const report = this.report ?? {};
    return {
      ...report,
      receivedPosition: report.receivedPosition == null ? null : this.streamPosition(report.receivedPosition),
      contextState: this.context.state,
      contextRate: this.context.sampleRate,
      streamRate: this.streamRate,
      engine: this.fallback !== null ? "ScriptProcessor" : "AudioWorklet",
      outputSeconds,
      latencySeconds: (report.depthSeconds ?? 0) + outputSeconds,
    };
  }

  emit(type) {
    this.dispatchEvent(new Event(type));
  }
}
