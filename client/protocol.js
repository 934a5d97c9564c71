// The wire format of /ws as plain functions (docs/PROTOCOL.md, version 1): binary messages in,
// plain objects out; control messages as plain objects. No sockets, no DOM.

export const PROTOCOL_VERSION = 1;
/**
 * The rate streamer's server sends (Riffusion's 44.1 kHz). A PCM audio header carries the real
 * rate and the page follows it; this is the guess for what comes before the first header, and the
 * clock of an Opus message's stream positions, whose header carries the codec's 48 kHz only.
 */
export const STREAM_RATE = 44100;
export const KIND_AUDIO = 1;
export const KIND_FRAME = 2;
export const KIND_OPUS = 3;
const AUDIO_HEADER_BYTES = 24;
const OPUS_HEADER_BYTES = 32;
const FRAME_HEADER_BYTES = 16;
const SAMPLE_FORMATS = { 1: { name: "s16", bytes: 2 }, 2: { name: "f32", bytes: 4 } };
const S16_FULL_SCALE = 32767; // the server scales [-1, 1] by 32767

/** Ranges of the control values (docs/PROTOCOL.md, "Commands"), for the sliders and fields. */
export const RANGES = Object.freeze({
  weight: [0, 100],
  seed: [0, 2 ** 32 - 1],
  denoising: [0, 1],
  guidance: [0, 30],
  transitionSeconds: [0, 600],
  transitionBars: [0, 256],
});

export class ProtocolError extends Error {}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function readUint64(view, offset) {
  // Two halves rather than getBigUint64 (missing before Safari 15); exact below 2^53.
  const low = view.getUint32(offset, true);
  const high = view.getUint32(offset + 4, true);
  if (high >= 2 ** 21) throw new ProtocolError("a sample position beyond 2^53 cannot be held exactly");
  return high * 2 ** 32 + low;
}

function readInt64(view, offset) {
  // Signed (an Opus stream's first packet starts before position 0); exact within ±2^53.
  const low = view.getUint32(offset, true);
  const high = view.getInt32(offset + 4, true);
  if (high >= 2 ** 21 || high < -(2 ** 21)) throw new ProtocolError("a position beyond ±2^53 cannot be held exactly");
  return high * 2 ** 32 + low;
}

/**
 * Decode one binary message (an ArrayBuffer).
 * Audio: {kind: "audio", sequence, samplePosition, sampleRate, channels, sampleFormat, frames,
 *         planar: Float32Array per channel}.
 * Frame: {kind: "frame", frameId, samplePosition, png: ArrayBuffer}.
 * Opus:  {kind: "opus", sequence, samplePosition (stream clock, 44.1 kHz), codecPosition (48 kHz),
 *         sampleRate (the codec's, 48000), channels, frames (decoded, per channel), packets:
 *         Uint8Array per 20 ms packet}.
 * A kind this client does not know: {kind: "unknown", code} (to be ignored).
 */
export function parseBinary(buffer) {
  if (buffer.byteLength < 4) throw new ProtocolError(`binary message of ${buffer.byteLength} bytes has no preamble`);
  const view = new DataView(buffer);
  const version = view.getUint8(0);
  const kind = view.getUint8(1);
  const headerBytes = view.getUint16(2, true);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(`the server speaks protocol ${version}, this page ${PROTOCOL_VERSION}: reload the page`);
  }
  if (headerBytes > buffer.byteLength) throw new ProtocolError("binary header longer than its message");
  if (kind === KIND_AUDIO) {
    if (headerBytes < AUDIO_HEADER_BYTES) throw new ProtocolError(`audio header of ${headerBytes} bytes is too short`);
    const channels = view.getUint16(20, true);
    const format = SAMPLE_FORMATS[view.getUint16(22, true)];
    if (!format) throw new ProtocolError(`unknown sample format ${view.getUint16(22, true)}`);
    if (channels < 1) throw new ProtocolError("audio message with no channels");
    const payloadBytes = buffer.byteLength - headerBytes;
    const frameBytes = channels * format.bytes;
    if (payloadBytes % frameBytes !== 0) throw new ProtocolError("audio payload is not a whole number of frames");
    const frames = payloadBytes / frameBytes;
    return {
      kind: "audio",
      sequence: view.getUint32(4, true),
      samplePosition: readUint64(view, 8),
      sampleRate: view.getUint32(16, true),
      channels,
      sampleFormat: format.name,
      frames,
      planar: decodeSamples(buffer, headerBytes, frames, channels, format.name),
    };
  }
  if (kind === KIND_OPUS) return parseOpus(buffer, view, headerBytes);
  if (kind === KIND_FRAME) {
    if (headerBytes < FRAME_HEADER_BYTES) throw new ProtocolError(`frame header of ${headerBytes} bytes is too short`);
    return {
      kind: "frame",
      frameId: view.getUint32(4, true),
      samplePosition: readUint64(view, 8),
      png: buffer.slice(headerBytes),
    };
  }
  return { kind: "unknown", code: kind };
}

function parseOpus(buffer, view, headerBytes) {
  if (headerBytes < OPUS_HEADER_BYTES) throw new ProtocolError(`opus header of ${headerBytes} bytes is too short`);
  const count = view.getUint16(30, true);
  let at = headerBytes + 2 * count;
  if (at > buffer.byteLength) throw new ProtocolError("opus message too short for its packet lengths");
  const packets = [];
  for (let i = 0; i < count; i++) {
    const length = view.getUint16(headerBytes + 2 * i, true);
    if (at + length > buffer.byteLength) throw new ProtocolError("opus packets longer than their message");
    packets.push(new Uint8Array(buffer, at, length));
    at += length;
  }
  if (at !== buffer.byteLength) throw new ProtocolError("opus message longer than its packets");
  const sampleRate = view.getUint32(24, true);
  return {
    kind: "opus",
    sequence: view.getUint32(4, true),
    samplePosition: readInt64(view, 8),
    codecPosition: readInt64(view, 16),
    sampleRate,
    channels: view.getUint16(28, true),
    frames: count * OPUS_FRAME_SAMPLES,
    packets,
  };
}

/** Samples per Opus packet (20 ms at 48 kHz; the server's `audio_config.frame_samples`). */
export const OPUS_FRAME_SAMPLES = 960;

/** Interleaved little-endian samples -> one Float32Array per channel, in [-1, 1]. */
export function decodeSamples(buffer, offset, frames, channels, sampleFormat) {
  const planar = Array.from({ length: channels }, () => new Float32Array(frames));
  const count = frames * channels;
  const bytes = sampleFormat === "s16" ? 2 : 4;
  let interleaved = null;
  if (LITTLE_ENDIAN && offset % bytes === 0) {
    interleaved = sampleFormat === "s16" ? new Int16Array(buffer, offset, count) : new Float32Array(buffer, offset, count);
  }
  const scale = sampleFormat === "s16" ? 1 / S16_FULL_SCALE : 1;
  const view = interleaved === null ? new DataView(buffer, offset, count * bytes) : null;
  for (let c = 0; c < channels; c++) {
    const out = planar[c];
    for (let i = 0, j = c; i < frames; i++, j += channels) {
      let value;
      if (interleaved !== null) value = interleaved[j];
      else value = sampleFormat === "s16" ? view.getInt16(j * 2, true) : view.getFloat32(j * 4, true);
      out[i] = value * scale;
    }
  }
  return planar;
}

/** Parse a text message; null for anything that is not a JSON object with a string type. */
export function parseText(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    return null;
  }
  if (message === null || typeof message !== "object" || Array.isArray(message) || typeof message.type !== "string") {
    return null;
  }
  return message;
}

// ---- control messages (client -> server) ----------------------------------------------------

export const commands = {
  auth: (token) => ({ type: "auth", token }),
  setPrompts: (prompts) => ({ type: "set_prompts", prompts: prompts.map(({ text, weight }) => ({ text, weight })) }),
  setNegativePrompt: (text) => ({ type: "set_negative_prompt", text }),
  setSeed: (seed) => ({ type: "set_seed", seed }),
  setDenoising: (denoising) => ({ type: "set_denoising", denoising }),
  setGuidance: (guidance) => ({ type: "set_guidance", guidance }),
  setSeedLoop: (name) => ({ type: "set_seed_loop", name }),
  setTransition: (amount, unit) => ({ type: "set_transition", [unit === "bars" ? "bars" : "seconds"]: amount }),
  pause: () => ({ type: "pause" }),
  resume: () => ({ type: "resume" }),
  skip: () => ({ type: "skip" }),
  capture: (bars) => ({ type: "capture", bars }),
};
