// Listening in Opus: the browser's own decoder (WebCodecs AudioDecoder) turns the server's Opus
// messages back into the planar float messages the player takes. The player then runs on the
// decoder's 48 kHz clock: its positions are the messages' codecPosition, which grows by exactly
// 960 per 20 ms packet. The waterfall and the now-playing panel count on the stream's 44.1 kHz
// clock; each message carries both positions, and `streamPosition` maps one to the other.
//
// Packets are decoded as raw Opus (no `description`): every packet is independently decodable,
// so a listener can start at any packet, as one who joins mid-stream does. The decoder needs about
// 80 ms to converge from a cold start; the player skips the start of the join burst anyway.

import { OPUS_FRAME_SAMPLES, STREAM_RATE } from "./protocol.js";

export const OPUS_RATE = 48000;
const ANCHORS_KEPT = 100; // 10 s of messages: more than the player ever holds

function decoderConfig(channels) {
  return { codec: "opus", sampleRate: OPUS_RATE, numberOfChannels: channels };
}

/** Whether this browser decodes Opus through WebCodecs (else the page listens in PCM). */
export async function opusSupported(channels = 2) {
  if (typeof globalThis.AudioDecoder !== "function") return false;
  try {
    return (await AudioDecoder.isConfigSupported(decoderConfig(channels))).supported === true;
  } catch {
    return false;
  }
}

/** Planar float copies of an AudioData's samples (converting from any sample format). */
function planarSamples(audioData) {
  const frames = audioData.numberOfFrames;
  const channels = audioData.numberOfChannels;
  try {
    return Array.from({ length: channels }, (_, c) => {
      const plane = new Float32Array(frames);
      audioData.copyTo(plane, { planeIndex: c, format: "f32-planar" });
      return plane;
    });
  } catch {
    // Older implementations copy only in the data's own format: take interleaved float.
    const interleaved = new Float32Array(frames * channels);
    audioData.copyTo(interleaved, { planeIndex: 0, format: "f32" });
    return Array.from({ length: channels }, (_, c) => interleaved.filter((_, i) => i % channels === c));
  }
}

/**
 * Opus messages in (`push`, with the connection's {message, live, gap}), decoded messages out to
 * `onAudio` in the same form as PCM ones ({message: {samplePosition, frames, sampleRate, planar},
 * live, gap}), one per Opus message, in order. `record`: keep every packet received (tests).
 */
export class OpusReceiver {
  constructor({ onAudio, onProblem = () => {}, record = false }) {
    Object.assign(this, { onAudio, onProblem });
    this.decoder = null;
    this.pending = []; // one entry per packet given to the decoder, in order
    this.anchors = []; // {codec, stream}: where the two clocks met, one per message
    this.received = record ? [] : null;
    this.packets = 0;
  }

  /** The server's audio_config: a new encoder, whose packets a fresh decoder should take. */
  configure(config) {
    this.config = config;
    this.close();
  }

  close() {
    if (this.decoder !== null && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    this.pending = [];
  }

  push({ message, live, gap }) {
    if (message.packets.length === 0) return;
    if (this.decoder === null || this.decoder.state === "closed") this.open(message.channels);
    this.anchors.push({ codec: message.codecPosition, stream: message.samplePosition });
    if (this.anchors.length > ANCHORS_KEPT) this.anchors.shift();
    this.received?.push({ codecPosition: message.codecPosition, packets: message.packets.map((p) => p.slice()) });
    const batch = { message, live, gap, parts: [], left: message.packets.length };
    message.packets.forEach((data, i) => {
      this.pending.push(batch);
      const position = message.codecPosition + i * OPUS_FRAME_SAMPLES;
      this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: Math.round((position * 1e6) / OPUS_RATE), data }));
      this.packets += 1;
    });
  }

  open(channels) {
    this.pending = [];
    this.decoder = new AudioDecoder({
      output: (audioData) => this.output(audioData),
      error: (error) => {
        this.pending = [];
        this.onProblem(`the Opus decoder failed (${error.message}); restarting it`);
      },
    });
    this.decoder.configure(decoderConfig(channels));
  }

  output(audioData) {
    const batch = this.pending.shift();
    if (batch === undefined) {
      audioData.close();
      return;
    }
    batch.parts.push(planarSamples(audioData));
    audioData.close();
    if (--batch.left === 0) this.deliver(batch);
  }

  deliver({ message, live, gap, parts }) {
    const channels = parts[0].length;
    const frames = parts.reduce((n, part) => n + part[0].length, 0);
    const planar = Array.from({ length: channels }, (_, c) => {
      const joined = new Float32Array(frames);
      let at = 0;
      for (const part of parts) {
        joined.set(part[c], at);
        at += part[c].length;
      }
      return joined;
    });
    // A decoder that holds back leading samples shortens the first output: the rest still ends
    // where the packets end.
    const samplePosition = message.codecPosition + message.frames - frames;
    this.onAudio({ message: { samplePosition, frames, sampleRate: OPUS_RATE, channels, planar }, live, gap });
  }

  /** The stream position (44.1 kHz) of a 48 kHz codec position, from the nearest message before it. */
  streamPosition(codecPosition) {
    if (codecPosition === null || this.anchors.length === 0) return null;
    let anchor = this.anchors[0];
    for (const candidate of this.anchors) {
      if (candidate.codec <= codecPosition) anchor = candidate;
      else break;
    }
    return anchor.stream + ((codecPosition - anchor.codec) * STREAM_RATE) / OPUS_RATE;
  }
}
