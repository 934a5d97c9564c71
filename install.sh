#!/usr/bin/env bash
# Installs everything streamer and its tests need on Debian/Ubuntu: the system packages (as root
# or through sudo) and a virtual environment .venv holding streamer with its test tools.
# Run it again at any time; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")"

system_packages=(
  libportaudio2        # sounddevice: the local sound device
  libsndfile1          # soundfile: WAV / FLAC / OGG
  jackd2               # tests: a real-time sound server with no hardware (and JACK MIDI)
  libasound2           # python-rtmidi (the midi extra): ALSA MIDI
  fluidsynth fluid-soundfont-gm  # streamer make-dataset and scripts/render_seed_loops.py: MIDI to audio
  chromium             # tests/test_client.py: the browser client in headless Chromium (Playwright)
  icecast2             # tests/test_icecast.py: a real Icecast for `serve --icecast` and its relays
)
missing=()
for package in "${system_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# The link extra (Ableton Link, GPL-3) is installed too so that its tests run; see the README.
.venv/bin/python -m pip install --quiet -e ".[dev,midi,link]"
echo "streamer is installed in .venv: run .venv/bin/streamer --help"
