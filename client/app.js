// The page: wires the connection, the player, the waterfall, the now-playing panel, the readouts
// and the performer's controls together.
//
// URL parameters (all optional):
//   buffer=0.8   fixed jitter buffer depth in seconds (default: adaptive, starting at 0.4 s)
//   rate=48000   AudioContext rate to ask for; rate=native: the device's (default: the stream's)
//   tap=1        keep a copy of every sample played (the browser tests read it)
//   worklet=0    play through the ScriptProcessor fallback that insecure origins get
//   codec=pcm    listen in 16-bit PCM (706 kbit/s mono; a LAN); codec=opus: Opus (64-96 kbit/s).
//                Default: Opus where the browser decodes it (WebCodecs), else PCM
// The page's objects are on `window.streamer` for the tests and for curious performers.

import { Connection, streamUrl } from "./connection.js";
import { OPUS_RATE, OpusReceiver, opusSupported } from "./opus.js";
import { Player } from "./player.js";
import { STREAM_RATE } from "./protocol.js";
import { Steering } from "./steering.js";
import { Waterfall } from "./waterfall.js";

const READOUT_INTERVAL_MS = 250;
const BANDWIDTH_INTERVAL_MS = 2000; // ten messages a second: two seconds average them out

const $ = (id) => document.getElementById(id);

/** The codec asked for in the URL, else Opus where this browser can decode it, else PCM. */
async function chooseCodec(params) {
  const asked = params.get("codec");
  if (asked === "pcm") return "pcm";
  if (await opusSupported()) return "opus";
  if (asked === "opus") showProblem("This browser cannot decode Opus (no WebCodecs AudioDecoder): listening in PCM.");
  return "pcm";
}

/** The player's options from the page's URL; ``expectedRate`` is the rate of the audio it will be
 * fed when known before the first message (decoded Opus: 48 kHz), else undefined (PCM: the
 * stream's rate, read from the audio headers). */
function playerOptions(params, expectedRate) {
  const settings = {};
  const buffer = Number(params.get("buffer"));
  if (params.has("buffer") && buffer > 0) Object.assign(settings, { adaptive: false, startSeconds: buffer });
  const rate = params.get("rate");
  let contextRate = expectedRate;
  if (rate === "native") contextRate = null;
  else if (rate !== null && Number(rate) > 0) contextRate = Number(rate);
  return { settings, contextRate, tap: params.get("tap") === "1", worklet: params.get("worklet") !== "0" };
}

const params = new URLSearchParams(location.search);
const codec = await chooseCodec(params);
const connection = new Connection({ url: streamUrl(location, codec) });
let opus = null;
let player;
if (codec === "opus") {
  opus = new OpusReceiver({
    onAudio: (audio) => player.push(audio),
    onProblem: (message) => showProblem(message),
    record: params.get("tap") === "1",
  });
  player = new Player({ ...playerOptions(params, OPUS_RATE), streamPosition: (position) => opus.streamPosition(position) });
} else {
  player = new Player(playerOptions(params, undefined));
}
const waterfall = new Waterfall($("waterfall"));
const steering = new Steering(connection);
const nowPlaying = { shown: null, waiting: [] }; // events wait until their position is heard
const bandwidth = { bytes: 0, at: performance.now(), kbitPerSecond: null };
window.streamer = { codec, connection, player, opus, waterfall, steering, nowPlaying, bandwidth };

// ---- listening ---------------------------------------------------------------------------------

$("play").addEventListener("click", () => {
  if (player.wanted && player.running) {
    player.stop();
  } else {
    player.start().catch((error) => showProblem(`cannot start the audio: ${error.message}`));
  }
});
// The waterfall counts in the stream's clock: PCM's own rate; decoded Opus (48 kHz) is mapped back to
// the stream's positions, which count at STREAM_RATE.
player.addEventListener("rate", () => waterfall.setSampleRate(opus !== null ? STREAM_RATE : player.streamRate));
player.addEventListener("state", () => {
  const playing = player.wanted && player.running;
  $("play").textContent = playing ? "Stop" : player.wanted ? "Tap to resume" : "Play";
  $("play").setAttribute("aria-pressed", String(playing));
  $("waterfall-hint").hidden = playing;
});
$("volume").addEventListener("input", () => {
  const volume = Number($("volume").value);
  player.setVolume(volume * volume); // perceived loudness is closer to the square of the slider
  $("volume").setAttribute("aria-valuetext", `${Math.round(volume * 100)} %`);
});

connection.addEventListener("audio", (event) => {
  if (opus !== null) opus.push(event.detail);
  else player.push(event.detail);
});
connection.addEventListener("frame", (event) => {
  waterfall.addFrame(event.detail).catch((error) => showProblem(`a spectrogram image did not decode: ${error.message}`));
});
connection.addEventListener("hello", (event) => {
  steering.setLimits(event.detail.limits);
  if (event.detail.listening === "token" && event.detail.role === "none") {
    showProblem("This stream needs a token to listen: enter it under Steering.");
  }
});
connection.addEventListener("event", (event) => {
  const message = event.detail;
  if (message.type === "now_playing") {
    nowPlaying.waiting.push(message);
  } else if (message.type === "audio_config") {
    opus?.configure(message);
  } else if (message.type === "status") {
    showStatus(message);
  }
});
connection.addEventListener("problem", (event) => showProblem(event.detail.message));
connection.addEventListener("state", (event) => {
  const { state, retryInSeconds } = event.detail;
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = {
    connecting: "connecting…",
    open: "live",
    waiting: `reconnecting in ${retryInSeconds?.toFixed(1)} s`,
    stopped: "stopped",
  }[state];
  $("ro-reconnects").textContent = String(connection.reconnects);
});

// ---- seeing ------------------------------------------------------------------------------------

/** Show the newest now_playing whose frame is being heard (or the newest at all when not playing). */
function updateNowPlaying(heard) {
  let due = null;
  while (nowPlaying.waiting.length) {
    const next = nowPlaying.waiting[0];
    const position = typeof next.sample_position === "number" ? next.sample_position : null;
    if (heard !== null && position !== null && position > heard) break;
    due = nowPlaying.waiting.shift();
  }
  if (due !== null) showNowPlaying(due);
}

function showNowPlaying(event) {
  nowPlaying.shown = event;
  const prompts = Array.isArray(event.prompts) ? event.prompts : [];
  const total = prompts.reduce((sum, prompt) => sum + (Number(prompt.weight) || 0), 0) || 1;
  $("np-prompts").replaceChildren(
    ...prompts.map((prompt) => {
      const item = document.createElement("li");
      const text = document.createElement("span");
      text.className = "np-text";
      text.textContent = String(prompt.text);
      const weight = document.createElement("span");
      weight.className = "np-weight";
      const share = (Number(prompt.weight) || 0) / total;
      weight.style.setProperty("--share", share.toFixed(3));
      weight.textContent = `${Math.round(share * 100)} %`;
      weight.title = `weight ${prompt.weight}`;
      item.append(text, weight);
      return item;
    }),
  );
  const alpha = Number(event.alpha);
  $("np-alpha").textContent = Number.isFinite(alpha) ? `${Math.round(alpha * 100)} %` : "—";
  $("np-alpha-bar").style.width = Number.isFinite(alpha) ? `${Math.round(alpha * 100)}%` : "0";
  $("np-seed-loop").textContent = event.seed_loop || "—";
  $("np-section").textContent = event.section || "—";
  $("np-seed-loop").title = event.seed_variation ? `composed for this frame: ${event.seed_variation}` : "";
  $("np-bpm").textContent = typeof event.bpm === "number" ? event.bpm.toFixed(event.bpm % 1 ? 2 : 0) : "—";
  $("np-seed").textContent = Number.isInteger(event.seed) ? String(event.seed) : "—";
  $("np-denoising").textContent = typeof event.denoising === "number" ? event.denoising.toFixed(2) : "—";
  $("np-guidance").textContent = typeof event.guidance === "number" ? event.guidance.toFixed(1) : "—";
  $("np-negative").hidden = !event.negative_prompt;
  $("np-negative").textContent = event.negative_prompt ? `avoiding: ${event.negative_prompt}` : "";
  steering.showNowPlaying(event);
}

/** The live input's meter: peak over the last second, RMS beside it; clipping and a stopped
 * device said in words. */
function showInputLevel(input) {
  const meter = $("input-meter");
  const reading = $("input-level");
  if (!input) {
    meter.value = meter.min;
    reading.value = "no live input (serve --input)";
    return;
  }
  meter.value = Math.max(meter.min, input.peak_dbfs);
  const level = `peak ${input.peak_dbfs.toFixed(1)} dBFS · RMS ${input.rms_dbfs.toFixed(1)} dBFS`;
  reading.value = !input.ok ? "input stopped: the stream plays on" : input.clipped ? `${level} · CLIPPING` : level;
  reading.dataset.state = !input.ok ? "stopped" : input.clipped ? "clipped" : "ok";
}

function showStatus(status) {
  const badge = $("status");
  badge.dataset.state = status.state;
  if (status.state === "starting") {
    // Nothing plays until the first frame is made: say so, and for how long, not "0.0 s ahead".
    const making = typeof status.making_seconds === "number" ? `${status.making_seconds.toFixed(0)} s` : "…";
    badge.textContent = `making the first frame · ${making}`;
    const waiting = $("np-waiting");
    if (waiting) waiting.textContent = `the first frame is being made (${making} so far)…`;
  } else {
    const ahead = typeof status.lookahead_seconds === "number" ? ` · ${status.lookahead_seconds.toFixed(1)} s ahead` : "";
    badge.textContent = `${status.state}${ahead}`;
  }
  $("advice").hidden = !status.advice;
  $("advice").textContent = status.advice ?? "";
  showInputLevel(status.input);
  if (typeof status.paused === "boolean") steering.showPaused(status.paused);
  else if (status.state === "paused") steering.showPaused(true);
}

function showProblem(message) {
  $("problem").hidden = false;
  $("problem").textContent = message;
}

function animate() {
  const heard = player.heardPosition();
  waterfall.draw(heard);
  updateNowPlaying(heard);
  requestAnimationFrame(animate);
}

const ms = (seconds) => (typeof seconds === "number" ? String(Math.round(seconds * 1000)) : "—");

setInterval(() => {
  const stats = player.stats();
  if (stats === null) return;
  $("ro-buffer").textContent = ms(stats.depthSeconds);
  $("ro-target").textContent = ms(stats.targetSeconds);
  $("ro-jitter").textContent = ms(stats.jitterSeconds);
  $("ro-latency").textContent = ms(stats.latencySeconds);
  $("ro-underruns").textContent = String(stats.underruns ?? 0);
  const resampled = stats.streamRate !== null && stats.contextRate !== stats.streamRate ? " · resampled" : "";
  $("ro-output").textContent = `${(stats.contextRate / 1000).toFixed(1)} kHz${resampled}`;
  $("ro-output").title = stats.engine;
}, READOUT_INTERVAL_MS);

/** Audio received per second over the last readout period: what this listener costs the network. */
function updateBandwidth() {
  const now = performance.now();
  const bytes = connection.audioBytes;
  const seconds = (now - bandwidth.at) / 1000;
  if (seconds > 0 && bytes >= bandwidth.bytes) bandwidth.kbitPerSecond = ((bytes - bandwidth.bytes) * 8) / 1000 / seconds;
  Object.assign(bandwidth, { bytes, at: now });
  const rate = bandwidth.kbitPerSecond === null ? "—" : Math.round(bandwidth.kbitPerSecond);
  $("ro-codec").textContent = `${codec === "opus" ? "Opus" : "PCM"} · ${rate} kbit/s`;
}
setInterval(updateBandwidth, BANDWIDTH_INTERVAL_MS);

requestAnimationFrame(animate);
connection.start();
