"""Standard MIDI files of loops, on a clock of seconds rather than beats.

The clock runs at one quarter note per second (tempo 1,000,000 us) with 30000 ticks per quarter,
so a tick is 1/30000 s and one 5.12 s frame is exactly 153600 ticks. Every 16th note of every
loop tempo used here is then a whole number of ticks (140.625 BPM has no whole-microsecond beat,
so a beat-based MIDI tempo would drift), and a loop repeated in the file stays exactly periodic.

Times are given in 16th-note steps of the loop (fractions allowed, for swing) and converted to
ticks here; the file holds the loop several times over so that a renderer can settle into it.
mido writes the file.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Iterator
from fractions import Fraction

import mido

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
) -> Iterator[tuple[int, mido.Message]]:
    """(tick, MIDI message) pairs: the program changes ``(channel, program)`` at time 0, then the
    notes of a loop of ``steps`` 16ths lasting ``loop_seconds``, played ``repetitions`` times,
    every repetition identical."""
    ticks_per_step = Fraction(loop_seconds) * TICKS_PER_SECOND / steps

    def tick(step: Fraction | int) -> int:
        return round(step * ticks_per_step)

    for channel, program in programs:
        yield 0, mido.Message("program_change", channel=channel, program=program)
    notes = list(notes)
    for repetition in range(repetitions):
        first = repetition * steps
        for note in notes:
            yield tick(first + note.start), mido.Message(
                "note_on", channel=note.channel, note=note.key, velocity=note.velocity
            )
            yield tick(first + note.end), mido.Message(
                "note_off", channel=note.channel, note=note.key, velocity=0
            )


def standard_midi_file(timed: Iterable[tuple[int, mido.Message]]) -> bytes:
    """A format-0 Standard MIDI File of (tick, message) pairs."""
    # Note-offs sort before note-ons at the same tick, so a repeated note is re-struck.
    ordered = sorted(timed, key=lambda item: (item[0], item[1].type != "note_off"))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=MICROSECONDS_PER_QUARTER)])
    now = 0
    for at, message in ordered:
        track.append(message.copy(time=at - now))
        now = at
    file = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_SECOND, tracks=[track]).save(file=file)
    return file.getvalue()
