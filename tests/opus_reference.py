"""A reference Opus decoder for the tests: libopus through PyAV, float output, as browsers use.

``pre_skip`` is the number of leading decoded samples to drop: the OpusHead's at the start of a
stream, 0 when decoding from a packet in the middle (a listener who joined later), whose first
sample sits exactly at the packet's ``codec_position``.
"""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np


def decode_opus(packets: Sequence[bytes], channels: int, *, pre_skip: int = 0) -> np.ndarray:
    """Packets decoded by a fresh decoder, float32 of shape (channels, samples) at 48 kHz."""
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = 48000
    decoder.layout = "mono" if channels == 1 else "stereo"
    decoder.options = {"request_sample_fmt": "flt"}
    frames = []
    for packet in packets:
        for frame in decoder.decode(av.Packet(bytes(packet))):
            frames.append(frame.to_ndarray().reshape(-1, channels).T)
    return np.concatenate(frames, axis=1)[:, pre_skip:]
