// The WebSocket to /ws: opens it, parses what arrives, reconnects with back-off after a network
// loss, re-presents the token after a reconnect, and matches replies to requests.

import { commands, parseBinary, parseText, ProtocolError, STREAM_RATE } from "./protocol.js";

/**
 * Delays between reconnection attempts: doubling from `initialSeconds` up to `maxSeconds`, each
 * drawn in [half, full] of its step ("equal jitter") so that a room of listeners dropped together
 * does not come back in lockstep.
 */
export class Backoff {
  constructor({ initialSeconds = 0.5, maxSeconds = 10, factor = 2, random = Math.random } = {}) {
    Object.assign(this, { initialSeconds, maxSeconds, factor, random });
    this.attempt = 0;
  }

  next() {
    const step = Math.min(this.maxSeconds, this.initialSeconds * this.factor ** this.attempt);
    this.attempt += 1;
    return step * (0.5 + 0.5 * this.random());
  }

  reset() {
    this.attempt = 0;
  }
}

/** An error reply (or a lost connection) for a request; `code` as in docs/PROTOCOL.md. */
export class ReplyError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The URL of the stream on the server that served this page, in `codec` ("pcm" or "opus"). */
export function streamUrl(location, codec = "pcm") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws${codec === "pcm" ? "" : `?codec=${codec}`}`;
}

/**
 * Events (CustomEvent, payload in `detail`):
 *   state     {state: "connecting" | "open" | "waiting" | "stopped", retryInSeconds, reconnects}
 *   hello     the hello event
 *   role      {role, error}: after each authentication (automatic after a reconnect)
 *   event     any other server event (now_playing, status, ...)
 *   audio     {message, live, gap}: live is false for the join burst; gap: audio was missed
 *             (this listener was skipped forward, or this is the first audio after a reconnection);
 *             message is a PCM audio message or an Opus one (protocol.js), positions continuing
 *             across reconnections (Opus: its codecPosition)
 *   frame     a parsed spectrogram image message
 *   problem   {message}: something the server sent that this page cannot use
 */
export class Connection extends EventTarget {
  constructor({ url, backoff = new Backoff(), watchdogSeconds = 15, stableSeconds = 5, WebSocketClass = WebSocket }) {
    super();
    Object.assign(this, { url, backoff, watchdogSeconds, stableSeconds, WebSocketClass });
    this.state = "stopped";
    this.socket = null;
    this.token = null;
    this.role = "none";
    this.hello = null;
    this.reconnects = 0;
    this.pending = new Map(); // id -> {resolve, reject, type}
    this.nextId = 1;
    this.retryTimer = null;
    this.watchdog = null;
    this.lastAudioEnd = null; // stream position after the last audio delivered (across connections)
    this.audioBytes = 0; // binary audio received, for the kbit/s readout
    this.onOnline = () => {
      if (this.state === "waiting") this.connectNow();
    };
  }

  start() {
    if (this.state !== "stopped") return;
    globalThis.addEventListener?.("online", this.onOnline);
    this.connectNow();
  }

  stop() {
    this.state = "stopped";
    globalThis.removeEventListener?.("online", this.onOnline);
    clearTimeout(this.retryTimer);
    this.socket?.close(1000, "page closed the stream");
    this.socket = null;
    this.emit("state", { state: "stopped" });
  }

  /** Send a control message; resolves with the ack's details, rejects with a ReplyError. */
  request(message) {
    if (this.state !== "open") return Promise.reject(new ReplyError("not_connected", "not connected to the stream; wait for it to reconnect"));
    const id = this.nextId++;
    const promise = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, type: message.type }));
    this.socket.send(JSON.stringify({ ...message, id }));
    return promise;
  }

  /**
   * Present a token (performer, or listen token on a closed stream); kept for this page and
   * presented again after every reconnect. Resolves with the role the server grants.
   */
  async authenticate(token) {
    this.token = token;
    return this.sendAuth();
  }

  forgetToken() {
    this.token = null;
  }

  async sendAuth() {
    try {
      const details = await this.request(commands.auth(this.token));
      this.role = details.role ?? "listener";
      this.emit("role", { role: this.role });
      return this.role;
    } catch (error) {
      if (error.code === "unauthorized") this.token = null; // a wrong token is not retried
      this.emit("role", { role: this.role, error });
      throw error;
    }
  }

  // ---- internals -----------------------------------------------------------------------------

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    this.state = "connecting";
    this.emit("state", { state: "connecting", reconnects: this.reconnects });
    let socket;
    try {
      socket = new this.WebSocketClass(this.url);
    } catch (error) {
      this.emit("problem", { message: `cannot open ${this.url}: ${error.message}` });
      this.scheduleReconnect(null);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    const perConnection = { openedAt: null, sequence: null, burstSeconds: 0, framesReceived: 0, gap: false, lastMessageAt: Date.now() };
    socket.onopen = () => {
      perConnection.openedAt = Date.now();
      this.state = "open";
      this.emit("state", { state: "open", reconnects: this.reconnects });
      this.watchdog = setInterval(() => {
        if (Date.now() - perConnection.lastMessageAt > this.watchdogSeconds * 1000) socket.close(4000, "stream went silent");
      }, 1000);
    };
    socket.onmessage = (event) => {
      perConnection.lastMessageAt = Date.now();
      if (typeof event.data === "string") this.receiveText(event.data, perConnection);
      else this.receiveBinary(event.data, perConnection);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.watchdog);
      for (const { reject } of this.pending.values()) reject(new ReplyError("not_connected", "the connection was lost before the reply"));
      this.pending.clear();
      this.role = "none";
      if (this.state !== "stopped") this.scheduleReconnect(perConnection.openedAt);
    };
  }

  scheduleReconnect(openedAt) {
    if (openedAt !== null && Date.now() - openedAt >= this.stableSeconds * 1000) this.backoff.reset();
    const delay = this.backoff.next();
    this.state = "waiting";
    this.reconnects += 1;
    this.emit("state", { state: "waiting", retryInSeconds: delay, reconnects: this.reconnects });
    this.retryTimer = setTimeout(() => this.connectNow(), delay * 1000);
  }

  receiveText(text, perConnection) {
    const message = parseText(text);
    if (message === null) {
      this.emit("problem", { message: "the server sent a text message that is not a JSON object" });
      return;
    }
    if (message.type === "ack" || message.type === "error") {
      const waiting = this.pending.get(message.id);
      if (waiting === undefined) return;
      this.pending.delete(message.id);
      if (message.type === "ack") waiting.resolve(message.details ?? {});
      else waiting.reject(new ReplyError(message.code, message.message));
      return;
    }
    if (message.type === "hello") {
      this.hello = message;
      this.role = message.role;
      perConnection.burstSeconds = Number(message.burst_seconds) || 0;
      this.emit("hello", message);
      if (this.token !== null) this.sendAuth().catch(() => {});
      return;
    }
    this.emit("event", message);
  }

  receiveBinary(buffer, perConnection) {
    let message;
    try {
      message = parseBinary(buffer);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.emit("problem", { message: error.message });
      return;
    }
    if (message.kind === "frame") this.emit("frame", message);
    if (message.kind !== "audio" && message.kind !== "opus") return;
    this.audioBytes += buffer.byteLength;
    // A gap: skipped forward to the live edge, or the first audio after a reconnection.
    const skipped = perConnection.sequence !== null && message.sequence !== ((perConnection.sequence + 1) >>> 0);
    const reconnected = perConnection.sequence === null && this.lastAudioEnd !== null;
    perConnection.gap = perConnection.gap || skipped || reconnected;
    perConnection.sequence = message.sequence;
    const live = perConnection.framesReceived >= perConnection.burstSeconds * message.sampleRate;
    perConnection.framesReceived += message.frames;
    const position = message.kind === "opus" ? message.codecPosition : message.samplePosition;
    if (!live && this.lastAudioEnd !== null && position < this.lastAudioEnd) {
      // The burst after a reconnect repeats what arrived before the loss: keep only what is new.
      const overlap = this.lastAudioEnd - position;
      if (overlap >= message.frames) return;
      if (message.kind === "opus") trimPackets(message, overlap);
      else trimSamples(message, overlap);
    }
    const gap = perConnection.gap;
    perConnection.gap = false;
    this.lastAudioEnd = (message.kind === "opus" ? message.codecPosition : message.samplePosition) + message.frames;
    this.emit("audio", { message, live, gap });
  }
}

function trimSamples(message, frames) {
  message.planar = message.planar.map((channel) => channel.subarray(frames));
  message.frames -= frames;
  message.samplePosition += frames;
}

/** Drop the packets that hold any of the first `frames` samples (a packet cannot be cut). */
function trimPackets(message, frames) {
  const packetFrames = message.frames / message.packets.length;
  const count = Math.ceil(frames / packetFrames);
  message.packets = message.packets.slice(count);
  message.frames -= count * packetFrames;
  message.codecPosition += count * packetFrames;
  message.samplePosition += Math.round((count * packetFrames * STREAM_RATE) / message.sampleRate);
}
