"""Standard MIDI files of loops, on a clock of seconds rather than beats.

The clock runs at one quarter note per second (tempo 1,000,000 us) with 30000 ticks per quarter,
so a tick is 1/30000 s and one 5.12 s frame is exactly 153600 ticks. Every 16th note of every
loop tempo used here is then a whole number of ticks (140.625 BPM has no whole-microsecond beat,
so a beat-based MIDI tempo would drift), and a loop repeated in the file stays exactly periodic.

Times are given in 16th-note steps of the loop (fractions allowed, for swing) and converted to
ticks here; the file holds the loop several times over so that a renderer can settle into it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from fractions import Fraction

TICKS_PER_SECOND = 30000
MICROSECONDS_PER_QUARTER = 1_000_000
#: General MIDI channel 10 (0-based 9): FluidSynth plays it from the drum bank 128.
DRUM_CHANNEL = 9


@dataclasses.dataclass(frozen=True)
class Note:
    """One note of a loop: times in 16th-note steps from the loop's start, ``end`` after
    ``start`` (it may run past the loop's end: the tail then sounds into the next repetition)."""

    channel: int
    key: int
    velocity: int
    start: Fraction
    end: Fraction


def loop_events(
    programs: Iterable[tuple[int, int]],
    notes: Iterable[Note],
    steps: int,
    loop_seconds: Fraction,
    repetitions: int,
) -> Iterator[tuple[int, bytes]]:
    """(tick, MIDI message) pairs: the program changes ``(channel, program)`` at time 0, then the
    notes of a loop of ``steps`` 16ths lasting ``loop_seconds``, played ``repetitions`` times,
    every repetition identical."""
    ticks_per_step = Fraction(loop_seconds) * TICKS_PER_SECOND / steps

    def tick(step: Fraction | int) -> int:
        return round(step * ticks_per_step)

    for channel, program in programs:
        yield 0, bytes([0xC0 | channel, program])
    notes = list(notes)
    for repetition in range(repetitions):
        first = repetition * steps
        for note in notes:
            yield tick(first + note.start), bytes([0x90 | note.channel, note.key, note.velocity])
            yield tick(first + note.end), bytes([0x80 | note.channel, note.key, 0])


def variable_length(value: int) -> bytes:
    """MIDI variable-length quantity: 7 bits a byte, high bit set on all but the last."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def standard_midi_file(timed: Iterable[tuple[int, bytes]]) -> bytes:
    """A format-0 Standard MIDI File of (tick, message) pairs."""
    # Note-offs (0x8n) sort before note-ons at the same tick, so a repeated note is re-struck.
    ordered = sorted(timed, key=lambda item: (item[0], item[1][0] & 0xF0 != 0x80))
    track = bytearray(b"\x00\xff\x51\x03" + MICROSECONDS_PER_QUARTER.to_bytes(3, "big"))
    now = 0
    for at, message in ordered:
        track += variable_length(at - now) + message
        now = at
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    header += TICKS_PER_SECOND.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def parse_midi_events(data: bytes) -> list[tuple[int, bytes]]:
    """(tick, message) pairs of a format-0 file written by :func:`standard_midi_file`: channel
    messages only, no running status. For checking what a file holds."""
    if data[:4] != b"MThd" or data[14:18] != b"MTrk":
        raise ValueError("not a format-0 Standard MIDI File")
    track = data[22 : 22 + int.from_bytes(data[18:22], "big")]
    events, now, position = [], 0, 0
    while position < len(track):
        delta = 0
        while True:
            byte = track[position]
            position += 1
            delta = (delta << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        now += delta
        status = track[position]
        if status == 0xFF:  # meta event: type, length, data
            length = track[position + 2]
            position += 3 + length
            continue
        size = 2 if status & 0xF0 in (0xC0, 0xD0) else 3
        events.append((now, bytes(track[position : position + size])))
        position += size
    return events
