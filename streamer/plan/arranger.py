"""The form of the endless stream: songs of sections that walk over minutes (``--form song``).

Without a form the stream is one groove for as long as nobody steers: the same seed loop under
every frame, a new playlist prompt every 46 s (``--form loop``). With it, the stream plays songs:

- the first song plays the stream's own prompt, each later one a playlist prompt (never the one
  before); a song plays the sections of
  :data:`SONG` in order, each lasting a number of frames drawn for that song;
- a section is a change of the prompt's words (:func:`section_prompt`: its feel, "sparse" or
  "busy", "no drums" in a break, and only the lead instrument in an intro, a break and an
  outro), of the denoising (closer to the seed loop in an intro) and of the seed loop under it;
- with a composer at hand (FluidSynth), every frame's seed loop is a :class:`LoopVariation`
  composed for it: the song's harmony moves on by a chord a bar across the frames, the drum
  pattern changes between sections, a fill ends every second frame (every 4 bars at two bars a
  frame) and the frames of a four-bar phrase answer each other (the lead line passes to another
  instrument: ``compose_song_loop``). Without one, the seed loop stays the stream's own;
- a song plays at its style's tempo (:func:`song_beats`): at the stream's seed loop's when the
  style was trained at it, else at the nearest tempo it was trained at (the built-in model
  redraws drums at its style's tempo, so a house song on the 8-beat loop held two tempi at once:
  ``benchmarks/RESULTS.md``, "Novelty"). The tempo so changes between songs only, at the seam
  where the next song's first frame enters; without the styles' tempi (a performer's seed loop,
  a Link session) every song keeps the seed loop's.

Everything here is pure and deterministic for a seed: ``form_point(index, ...)`` says what frame
``index`` of the stream plays, whatever was planned before it, so the planner can rewind freely.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import random
from collections.abc import Mapping

#: The forms ``--form`` offers: ``song`` walks the sections below, ``loop`` keeps one groove.
FORMS = ("song", "loop")
#: Feel words of the built-in model's captions; a section replaces whichever the prompt has.
FEEL_WORDS = ("sparse", "busy")
#: Mode words of its captions: kept when a section names fewer instruments.
MODE_WORDS = ("major", "minor")
NO_DRUMS = "no drums"
#: How drums play in a section's seed loop.
DRUMS = ("none", "sparse", "busy")
#: Between a seed loop's name and its variation, in a composed loop's name.
VARIATION_MARK = "~"


@dataclasses.dataclass(frozen=True)
class Section:
    """One part of a song: how long it may last, and what it changes."""

    name: str
    #: Frames it lasts: drawn per song from this range (inclusive).
    min_frames: int
    max_frames: int
    feel: str  # "sparse" or "busy"
    drums: str  # in the seed loop: "none", "sparse" or "busy"
    #: Added to the stream's denoising (then kept within 0.05..1): lower stays nearer the seed
    #: loop's groove, higher lets the model wander.
    denoising_offset: float
    #: A drum fill ends every ``fill_every`` frames of the song (0: none).
    fill_every: int
    #: Which instruments of the song's prompt it names: "all", or "lead" (the first only: the
    #: built-in model then plays a thinner band; a frame of it reads 0.87 alike to the full
    #: band's, where two chords on read 0.95: ``benchmarks/RESULTS.md``, "Novelty").
    instruments: str = "all"


SECTIONS: dict[str, Section] = {
    section.name: section
    for section in (
        Section("intro", 3, 4, "sparse", "sparse", -0.05, 0, "lead"),
        Section("groove", 6, 8, "busy", "busy", 0.0, 2),
        Section("break", 3, 4, "sparse", "none", 0.05, 0, "lead"),
        Section("build", 3, 4, "busy", "busy", 0.0, 1),
        Section("drop", 6, 8, "busy", "busy", 0.05, 2),
        Section("outro", 3, 4, "sparse", "sparse", -0.05, 0, "lead"),
    )
}
#: The sections of a song, in order: the energy rises, falls in the break, peaks in the drop.
SONG = ("intro", "groove", "break", "build", "drop", "groove", "outro")
#: Chords of a song's progression, and chords a frame moves it on by (one per bar of a two-bar
#: frame): the harmony comes round every four frames.
PROGRESSION_CHORDS = 8
CHORDS_PER_FRAME = 2


@dataclasses.dataclass(frozen=True)
class LoopVariation:
    """A seed loop composed for one frame of a song, named so that the name says it all: the
    frame maker composes the loop from its name alone.

    ``base`` is the stream's seed loop, whose bar grid the variation keeps (and which plays if
    the variation cannot be composed); ``style`` the composer's style; ``song`` seeds its
    instruments and harmony; ``groove`` picks the drum pattern; ``chord_step`` how far the
    harmony has moved; ``beats`` the beats of its frame when the song plays at its style's
    tempo rather than the base's (None: the base's).
    """

    base: str
    style: str
    song: int
    groove: int
    drums: str
    chord_step: int
    fill: bool
    beats: int | None = None

    def __post_init__(self) -> None:
        if self.drums not in DRUMS:
            raise ValueError(f"drums must be one of {', '.join(DRUMS)}, got {self.drums!r}")
        if VARIATION_MARK in self.base or "." in self.style or not self.style:
            raise ValueError(f"not a loop variation: base {self.base!r}, style {self.style!r}")
        if self.beats is not None and self.beats < 1:
            raise ValueError(f"a loop holds at least one beat, got {self.beats}")

    @property
    def name(self) -> str:
        fill = ".fill" if self.fill else ""
        beats = "" if self.beats is None else f".b{self.beats}"
        return (
            f"{self.base}{VARIATION_MARK}{self.style}.s{self.song}.g{self.groove}.{self.drums}"
            f".c{self.chord_step}{fill}{beats}"
        )

    @classmethod
    def parse(cls, name: str) -> LoopVariation:
        """The variation a name says; ``ValueError`` for a name that is not one."""
        base, mark, variation = name.partition(VARIATION_MARK)
        parts = variation.split(".")
        try:
            style, song, groove, drums, chord, *rest = parts
            fill = rest[:1] == ["fill"]
            rest = rest[fill:]
            beats = rest.pop()[1:] if rest and rest[-1][:1] == "b" else None
            if not mark or rest or song[0] != "s" or groove[0] != "g" or chord[0] != "c":
                raise ValueError
            return cls(base, style, int(song[1:]), int(groove[1:]), drums, int(chord[1:]), fill,
                       None if beats is None else int(beats))
        except (ValueError, IndexError):
            raise ValueError(f"{name!r} is not the name of a composed seed loop") from None


def base_loop(seed_loop: str) -> str:
    """The seed loop a name plays on: itself, or the loop a variation was composed for."""
    return seed_loop.partition(VARIATION_MARK)[0]


def loop_beats(seed_loop: str, beats_of: Mapping[str, int]) -> int | None:
    """The beats a frame made from ``seed_loop`` holds: a variation's own tempo, else its base
    loop's (``beats_of``: each base loop's beats; None for a loop that does not say)."""
    base, mark, _ = seed_loop.partition(VARIATION_MARK)
    beats = LoopVariation.parse(seed_loop).beats if mark else None
    return beats or beats_of.get(base)


def song_beats(base_beats: int | None, style_beats: tuple[int, ...]) -> int | None:
    """The beats a frame of a song holds when its style was trained at ``style_beats`` beats a
    frame and the stream's seed loop holds ``base_beats``: None (the seed loop's own tempo)
    when the style knows that tempo, or when either is unknown; otherwise the style's tempo
    nearest the seed loop's (the slower of two as near), so the tempo moves as little as the
    style allows."""
    if base_beats is None or not style_beats or base_beats in style_beats:
        return None
    return min(style_beats, key=lambda beats: (abs(beats - base_beats), beats))


@dataclasses.dataclass(frozen=True)
class FormPoint:
    """What one frame of a song plays."""

    song: int
    section: str
    #: Sections begun since the stream started: a new number is a new section.
    section_number: int
    frame_in_section: int
    prompt: str
    denoising: float
    #: The frame's composed seed loop, or None to play the stream's own.
    loop: LoopVariation | None


def section_prompt(prompt: str, section: Section) -> str:
    """The song's prompt with the section's words: its feel instead of the prompt's, "no drums"
    where the section's seed loop has none, and in a "lead" section only the first instrument.

    A prompt in the built-in model's caption words reads "style, instrument, instrument, ...,
    mode, feel" (the first instrument the lead); a "lead" section keeps the style, the lead and
    the mode. A prompt with fewer than two instruments keeps them all.
    """
    words = [w.strip() for w in prompt.split(",") if w.strip()]
    kept = [w for w in words if w.lower() not in (*FEEL_WORDS, NO_DRUMS)]
    instruments = [w for w in kept[1:] if w.lower() not in MODE_WORDS]
    if section.instruments == "lead" and len(instruments) >= 2:
        kept = [w for w in kept if w not in instruments[1:]]
    if section.drums == "none":
        kept.append(NO_DRUMS)
    return ", ".join([*kept, section.feel])


@dataclasses.dataclass(frozen=True)
class _Song:
    number: int
    first_frame: int
    prompt: str
    lengths: tuple[int, ...]  # frames of each section of SONG

    @property
    def frames(self) -> int:
        return sum(self.lengths)


@functools.lru_cache(maxsize=64)
def _songs(seed: int, first: str, playlist: tuple[str, ...], count: int) -> tuple[_Song, ...]:
    """The first ``count`` songs of a stream with this seed, first prompt and playlist."""
    songs: list[_Song] = []
    for number in range(count):
        rng = random.Random(f"streamer-form:{seed}:{number}")
        before = songs[-1].prompt if songs else None
        choices = [p for p in playlist if p != before] or list(playlist)
        prompt = choices[rng.randrange(len(choices))] if songs else first
        lengths = tuple(
            rng.randint(SECTIONS[name].min_frames, SECTIONS[name].max_frames) for name in SONG
        )
        first = songs[-1].first_frame + songs[-1].frames if songs else 0
        songs.append(_Song(number, first, prompt, lengths))
    return tuple(songs)


def _song_at(index: int, seed: int, first: str, playlist: tuple[str, ...]) -> _Song:
    count = 8
    while True:  # songs last 27 frames at least: 8 songs are 18 minutes, 1024 are 40 hours
        songs = _songs(seed, first, playlist, count)
        if index < songs[-1].first_frame + songs[-1].frames:
            starts = [song.first_frame for song in songs]
            return songs[bisect.bisect_right(starts, index) - 1]
        count *= 2


def form_point(
    index: int,
    seed: int,
    first: str,
    playlist: tuple[str, ...],
    base: str,
    denoising: float,
    styles: Mapping[str, str] | None,
    tempi: Mapping[str, tuple[int, ...]] | None = None,
    base_beats: int | None = None,
) -> FormPoint:
    """What frame ``index`` of a song-form stream plays.

    ``seed`` is the stream's, ``first`` the first song's prompt, ``base`` its seed loop and
    ``denoising`` its denoising; ``styles`` maps prompts to composer styles (a prompt it lacks
    takes the first style in it); None when no composer is at hand, and the seed loop stays
    ``base``. ``tempi`` maps composer styles to the beats a frame they were trained at and
    ``base_beats`` is the beats of ``base``: a song plays at :func:`song_beats` (without them,
    at ``base``'s tempo).
    """
    if not playlist:
        raise ValueError("the song form needs at least one playlist prompt")
    song = _song_at(index, seed, first, playlist)
    offset = index - song.first_frame
    number_before = len(SONG) * song.number
    for position, (name, length) in enumerate(zip(SONG, song.lengths)):
        if offset < length:
            break
        offset -= length
    section = SECTIONS[name]
    loop = None
    if styles:
        style = styles.get(song.prompt, next(iter(styles.values())))
        beats = song_beats(base_beats, (tempi or {}).get(style, ()))
        loop = loop_at(
            base, style, seed * 1000 + song.number, position, index - song.first_frame, beats
        )
    return FormPoint(
        song=song.number,
        section=name,
        section_number=number_before + position,
        frame_in_section=offset,
        prompt=section_prompt(song.prompt, section),
        denoising=min(1.0, max(0.05, denoising + section.denoising_offset)),
        loop=loop,
    )


def loop_at(
    base: str, style: str, song: int, position: int, frame_of_song: int, beats: int | None = None
) -> LoopVariation:
    """The composed loop of a song's frame in the section at ``position`` of :data:`SONG`: its
    drums, the chords the song has reached, and a fill where the section's fills fall on the
    song's phrase grid (so that a fill ends the phrase's answer frame); ``beats`` its tempo
    (None: the base loop's)."""
    section = SECTIONS[SONG[position]]
    return LoopVariation(
        base=base,
        style=style,
        song=song,
        groove=position,
        drums=section.drums,
        chord_step=(frame_of_song * CHORDS_PER_FRAME) % PROGRESSION_CHORDS,
        fill=bool(section.fill_every) and (frame_of_song + 1) % section.fill_every == 0,
        beats=beats,
    )


def next_loops(loop: LoopVariation) -> tuple[LoopVariation, ...]:
    """The loops the song's next frame plays: the section's next, or the next section's first
    if this frame ends its section (the loop does not say; the last section's successor is the
    next song's, unknown here). Exact, as the loop's chords say where in a round of the
    progression its frame is, and every section's fills fall a whole number of times a round.

    The song form composes these ahead (``streamer.runtime.composed_loops``): FluidSynth takes
    about 0.7 s a loop on a 2-core AVX2 CPU, the frames' own time, so it composes no others.
    """
    frame = loop.chord_step // CHORDS_PER_FRAME + 1  # the next frame, within a round
    return tuple(
        loop_at(loop.base, loop.style, loop.song, position, frame, loop.beats)
        for position in (loop.groove, loop.groove + 1)
        if position < len(SONG)
    )
