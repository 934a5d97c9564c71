// A scrolling spectrogram of what is being heard: the server's frame images (one 512 x 512 mel
// spectrogram per 5.12 s frame, column c covering the 10 ms of stream from p + c h to
// p + (c + 1) h for a frame starting at stream position p, h = rate / 100: 441 samples at
// 44.1 kHz), drawn so that the right edge is the column at the position the listener hears now.
// Each draw places the visible slices of at most a few images afresh from the heard position, so
// it never drifts from the audio and never blurs.
//
// Assumes Riffusion's image format (docs/PROTOCOL.md): loud is dark, low frequencies at the
// bottom, mel scale (HTK) from 0 to 10 kHz, stereo as green (left) and blue (right); or, for an
// Opus listener, the same as one grey level (the louder channel) in WebP.

const HOP_SECONDS = 0.01; // Riffusion's step: one image column
const MAX_HZ = 10000;
const AXIS_HZ = [200, 500, 1000, 2000, 5000, 10000];
const MAX_FRAMES_KEPT = 6; // an 8 s window shows parts of at most 3 frames; the rest is margin

/** A perceptually ordered dark-to-bright palette (close to matplotlib's "inferno"). */
function palette() {
  const stops = [
    [0, [0, 0, 4]],
    [0.2, [40, 11, 84]],
    [0.4, [120, 28, 109]],
    [0.6, [203, 71, 71]],
    [0.8, [247, 149, 20]],
    [1, [252, 255, 164]],
  ];
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = i / 255;
    let s = 0;
    while (s < stops.length - 2 && x > stops[s + 1][0]) s++;
    const [x0, c0] = stops[s];
    const [x1, c1] = stops[s + 1];
    const t = (x - x0) / (x1 - x0);
    for (let k = 0; k < 3; k++) lut[i * 3 + k] = c0[k] + t * (c1[k] - c0[k]);
  }
  return lut;
}

const LUT = palette();

const mel = (hz) => 2595 * Math.log10(1 + hz / 700);

/** The image's type from its first bytes: PNG, or the grey WebP that Opus listeners get. */
function imageType(bytes) {
  const head = new Uint8Array(bytes, 0, Math.min(12, bytes.byteLength));
  const text = String.fromCharCode(...head);
  return text.startsWith("RIFF") && text.slice(8, 12) === "WEBP" ? "image/webp" : "image/png";
}

/** Decode a frame's image and recolour it: returns a canvas to draw slices from. */
async function colouredImage(png) {
  const url = URL.createObjectURL(new Blob([png], { type: imageType(png) }));
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const level = 255 - Math.min(data[i + 1], data[i + 2]); // louder channel; mono has R = G = B
      data[i] = LUT[level * 3];
      data[i + 1] = LUT[level * 3 + 1];
      data[i + 2] = LUT[level * 3 + 2];
      data[i + 3] = 255;
    }
    context.putImageData(pixels, 0, 0);
    return canvas;
  } finally {
    URL.revokeObjectURL(url);
  }
}

export class Waterfall {
  constructor(canvas, { windowSeconds = 8 } = {}) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.windowSeconds = windowSeconds;
    this.sampleRate = null; // the stream's, from the audio headers (setSampleRate)
    this.frames = []; // [{frameId, position, image}] sorted by position
    this.lastDrawn = null; // {heardPosition, frameId, column}: what the right edge shows (tests)
  }

  /** The stream's rate (from the audio headers): stream positions count samples at this rate. */
  setSampleRate(rate) {
    this.sampleRate = rate;
  }

  /** A frame image message from the connection (arrives before its audio is heard). */
  async addFrame({ frameId, samplePosition, png }) {
    const image = await colouredImage(png);
    this.frames = this.frames.filter((frame) => frame.position !== samplePosition);
    this.frames.push({ frameId, position: samplePosition, image });
    this.frames.sort((a, b) => a.position - b.position);
    // A page left open without playing must not pile up images (1 MB each).
    if (this.frames.length > MAX_FRAMES_KEPT) this.frames.splice(0, this.frames.length - MAX_FRAMES_KEPT);
  }

  /** Draw the window ending at the heard stream position (null: nothing plays, keep the picture). */
  draw(heardPosition) {
    const canvas = this.canvas;
    const ratio = globalThis.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio);
    const height = Math.round(canvas.clientHeight * ratio);
    if (width === 0 || height === 0) return;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    } else if (heardPosition === null) {
      return;
    }
    const context = this.context;
    context.fillStyle = "#000004";
    context.fillRect(0, 0, width, height);
    if (heardPosition !== null && this.sampleRate !== null) this.drawSlices(heardPosition, width, height);
    this.drawAxis(width, height, ratio);
  }

  drawSlices(heard, width, height) {
    const context = this.context;
    const windowFrames = this.windowSeconds * this.sampleRate;
    const hopFrames = HOP_SECONDS * this.sampleRate;
    const viewStart = heard - windowFrames;
    const pixelsPerFrame = width / windowFrames;
    context.imageSmoothingEnabled = true;
    this.lastDrawn = { heardPosition: heard, frameId: null, column: null };
    for (let i = 0; i < this.frames.length; i++) {
      const frame = this.frames[i];
      const columns = frame.image.width;
      let end = frame.position + columns * hopFrames;
      if (i + 1 < this.frames.length) end = Math.min(end, this.frames[i + 1].position); // replaced early (a skip)
      const from = Math.max(frame.position, viewStart);
      const to = Math.min(end, heard);
      if (to <= from) continue;
      const sourceX = (from - frame.position) / hopFrames;
      const sourceWidth = (to - from) / hopFrames;
      const x = (from - viewStart) * pixelsPerFrame;
      const w = (to - from) * pixelsPerFrame;
      context.drawImage(frame.image, sourceX, 0, sourceWidth, frame.image.height, x, 0, w, height);
      if (to === heard) this.lastDrawn = { heardPosition: heard, frameId: frame.frameId, column: Math.floor((heard - frame.position) / hopFrames) };
    }
    // Images that have scrolled out of view are no longer needed.
    while (this.frames.length > 1 && this.frames[1].position <= viewStart) this.frames.shift();
  }

  drawAxis(width, height, ratio) {
    const context = this.context;
    context.font = `${11 * ratio}px system-ui, sans-serif`;
    context.textBaseline = "middle";
    for (const hz of AXIS_HZ) {
      const y = height * (1 - mel(hz) / mel(MAX_HZ));
      context.fillStyle = "rgba(255, 255, 255, 0.18)";
      context.fillRect(0, Math.round(y), width, ratio);
      context.fillStyle = "rgba(255, 255, 255, 0.75)";
      const label = hz >= 1000 ? `${hz / 1000} kHz` : `${hz} Hz`;
      context.fillText(label, 6 * ratio, Math.min(height - 8 * ratio, Math.max(8 * ratio, y + 8 * ratio)));
    }
  }
}
