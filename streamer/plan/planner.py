"""The stream's score: which point of latent space each upcoming frame is made from.

The stream walks on two independent paths at once, so that it never stands still and never
jumps:

- the *noise walk* slerps from one integer seed to the next over ``seed_walk_seconds``, then on
  to a new seed (a seeded random walk: background music never repeats exactly);
- the *prompt path* moves the prompt blend, denoising and guidance from where the stream is to
  the performer's target over the transition length. In endless mode, when nobody steers for a
  while, the target moves on by itself: through songs of sections (``form="song"``,
  ``streamer.plan.arranger``: each section's prompt words and denoising become the target as it
  begins, and each frame plays the section's seed loop), or through the playlist alone
  (``form="loop"``: a new prompt every ``endless_prompt_seconds``, one seed loop throughout).

Everything here is pure: a :class:`WalkState` and the settings go in, a :class:`PlannedFrame` and
the next state come out. A control change rewinds to the last frame that will still be heard
(frames generated for the old plan are discarded) and re-plans from there, so the change is heard
at the next frame switch.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping

from streamer.plan.arranger import FORMS, FormPoint, form_point
from streamer.plan.settings import PromptBlend, StreamSettings

#: Prompts the endless mode drifts through when no playlist is configured.
DEFAULT_PLAYLIST = (
    "lo-fi hip hop beat, chill, vinyl crackle",
    "deep house groove, warm bass, soft pads",
    "jazz piano trio, brushed drums, upright bass",
    "ambient techno, dub chords, steady kick",
    "funk bass line, wah guitar, tight drums",
    "downtempo trip hop, dusty breakbeat, rhodes",
)


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
    """How the walk moves. Times are stream time, in seconds."""

    #: Stream time of one frame: each frame plays its whole loop before the next takes over
    #: (5.12 s, one 512-column image; the engine sets it from the spectrogram parameters).
    frame_seconds: float = 5.12
    #: Time for the noise to slerp from one seed to the next.
    seed_walk_seconds: float = 15.36
    #: Drift through the playlist when nobody steers.
    endless: bool = True
    playlist: tuple[str, ...] = DEFAULT_PLAYLIST
    #: In endless mode, a new playlist prompt is taken after this long without a change...
    endless_prompt_seconds: float = 46.08
    #: ...and a performer's change holds the drift (and the form) off for this long.
    endless_hold_after_control_seconds: float = 120.0
    #: In endless mode: "song" walks songs of sections, "loop" keeps one groove and drifts
    #: through the playlist (the stream as it was before forms).
    form: str = "song"
    #: (playlist prompt, composer style) pairs: each song composes its seed loops in its
    #: prompt's style. Empty when there is no composer (no FluidSynth): the seed loop stays.
    loop_styles: tuple[tuple[str, str], ...] = ()
    #: (composer style, beats a frame it was trained at) pairs: a song whose style does not
    #: know the seed loop's tempo plays at the nearest it knows (``arranger.song_beats``).
    #: Empty: every song at the seed loop's tempo (a performer's seed loop, a Link session).
    #: A copy of the composer's ``Style.beats``, made where the composer is known to be there,
    #: as ``loop_styles`` is: the planner imports no composer.
    style_beats: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        for name in ("frame_seconds", "seed_walk_seconds", "endless_prompt_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.endless and not self.playlist:
            raise ValueError("endless mode needs at least one playlist prompt")
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, got {self.form!r}")

    @property
    def song_form(self) -> bool:
        return self.endless and self.form == "song"

    def frames_for(self, seconds: float) -> int:
        """Number of frames a change of ``seconds`` is spread over (0 means at once)."""
        return max(0, math.ceil(seconds / self.frame_seconds - 1e-9))


@dataclasses.dataclass(frozen=True)
class PlannedFrame:
    """One point of the walk: everything the generator needs for one frame, already mixed.

    ``prompts`` is the blend at this point (a two-prompt transition at alpha a is the blend
    ``{start: 1 - a, end: a}``); the noise is ``slerp(seed_a, seed_b, noise_alpha)``.
    """

    index: int
    plan_version: int
    prompts: PromptBlend
    negative_prompt: str
    seed_a: int
    seed_b: int
    noise_alpha: float
    denoising: float
    guidance: float
    seed_loop: str
    #: Progress of the current prompt transition, 0..1 (1 when settled), for "now playing".
    transition_alpha: float
    #: The song's section this frame belongs to (None without a song form, or while a
    #: performer's change holds the form off).
    section: str | None = None


@dataclasses.dataclass(frozen=True)
class WalkState:
    """Where the walk stands before planning frame ``next_index``."""

    next_index: int
    target: StreamSettings
    # The prompt path: from the origin to the target over transition_frames frames.
    origin_prompts: PromptBlend
    origin_denoising: float
    origin_guidance: float
    transition_frames: int
    transition_done: int
    # The noise walk.
    seed_a: int
    seed_b: int
    noise_done: int
    # Endless drift: frames since the last prompt change, and how long until drifting is allowed.
    frames_since_change: int
    hold_frames: int
    rng_state: int
    # Song form: the stream's first seed and prompt (songs are drawn from the one, the first
    # song plays the other), the denoising sections vary around (the performer's latest), and
    # the section whose words are the target now (-1: none; the next frame takes its section's).
    form_seed: int = 0
    form_prompt: str = ""
    form_denoising: float = 0.75
    section_number: int = -1
    #: A performer chose the seed loop: the songs keep its tempo from then on.
    seed_loop_chosen: bool = False

    def point(self) -> tuple[PromptBlend, float, float, float]:
        """Blend, denoising, guidance and transition alpha of the last planned frame."""
        alpha = 1.0 if self.transition_frames == 0 else self.transition_done / self.transition_frames
        target = self.target
        return (
            self.origin_prompts.mix(target.prompts, alpha),
            _lerp(self.origin_denoising, target.denoising, alpha),
            _lerp(self.origin_guidance, target.guidance, alpha),
            alpha,
        )


def _lerp(a: float, b: float, alpha: float) -> float:
    return a + (b - a) * alpha


def _next_seed(rng_state: int) -> tuple[int, int]:
    """A new seed and the next random state (deterministic, independent of Python's global RNG)."""
    rng = random.Random(rng_state)
    return rng.randrange(2**31), rng.randrange(2**62)


def initial_state(settings: StreamSettings) -> WalkState:
    seed_b, rng_state = _next_seed(settings.seed)
    return WalkState(
        next_index=0,
        target=settings,
        origin_prompts=settings.prompts,
        origin_denoising=settings.denoising,
        origin_guidance=settings.guidance,
        transition_frames=0,
        transition_done=0,
        seed_a=settings.seed,
        seed_b=seed_b,
        noise_done=0,
        frames_since_change=0,
        hold_frames=0,
        rng_state=rng_state,
        form_seed=settings.seed,
        form_prompt=settings.prompts.dominant,
        form_denoising=settings.denoising,
    )


def retarget(
    state: WalkState, settings: StreamSettings, config: PlannerConfig, bpm: float
) -> WalkState:
    """Head for new settings from wherever the walk stands, over their transition length
    (``bpm`` is the seed loop's tempo, for transitions given in bars).

    A new seed restarts the noise walk from that seed, so a performer can recall a sound.
    """
    blend, denoising, guidance, _ = state.point()
    frames = config.frames_for(settings.transition.in_seconds(bpm))
    changes = {}
    if settings.seed != state.target.seed:
        seed_b, rng_state = _next_seed(settings.seed)
        changes = dict(seed_a=settings.seed, seed_b=seed_b, noise_done=0, rng_state=rng_state)
    return dataclasses.replace(
        state,
        target=settings,
        origin_prompts=blend,
        origin_denoising=denoising,
        origin_guidance=guidance,
        transition_frames=frames,
        transition_done=0,
        frames_since_change=0,
        **changes,
    )


def plan_next(
    state: WalkState,
    config: PlannerConfig,
    plan_version: int,
    bpm: float,
    seed_loop_beats: int | None = None,
) -> tuple[PlannedFrame, WalkState]:
    """Plan frame ``state.next_index`` and advance the walk by one frame (``seed_loop_beats``:
    the beats of the target's seed loop, which songs at another tempo move from)."""
    point = None
    if config.song_form:
        if state.hold_frames == 0:  # a performer's change holds the form off
            point = form_point(
                state.next_index,
                state.form_seed,
                state.form_prompt,
                config.playlist,
                state.target.seed_loop,
                state.form_denoising,
                dict(config.loop_styles),
                None if state.seed_loop_chosen else dict(config.style_beats),
                seed_loop_beats,
            )
            state = _enter_section(state, point, config, bpm)
    elif config.endless:
        state = _drift(state, config, bpm)
    done = min(state.transition_done + 1, state.transition_frames)
    state = dataclasses.replace(state, transition_done=done)
    blend, denoising, guidance, alpha = state.point()

    seed_walk_frames = max(1, config.frames_for(config.seed_walk_seconds))
    noise_done = state.noise_done + 1
    seed_a, seed_b, rng_state = state.seed_a, state.seed_b, state.rng_state
    if noise_done > seed_walk_frames:
        seed_a, noise_done = seed_b, 1
        seed_b, rng_state = _next_seed(rng_state)
    frame = PlannedFrame(
        index=state.next_index,
        plan_version=plan_version,
        prompts=blend,
        negative_prompt=state.target.negative_prompt,
        seed_a=seed_a,
        seed_b=seed_b,
        noise_alpha=noise_done / seed_walk_frames,
        denoising=denoising,
        guidance=guidance,
        seed_loop=point.loop.name if point is not None and point.loop else state.target.seed_loop,
        transition_alpha=alpha,
        section=None if point is None else point.section,
    )
    return frame, dataclasses.replace(
        state,
        next_index=state.next_index + 1,
        seed_a=seed_a,
        seed_b=seed_b,
        noise_done=noise_done,
        rng_state=rng_state,
        frames_since_change=state.frames_since_change + 1,
        hold_frames=max(0, state.hold_frames - 1),
    )


def _enter_section(
    state: WalkState, point: FormPoint, config: PlannerConfig, bpm: float
) -> WalkState:
    """A new section's words and denoising become the target, over the usual transition."""
    if point.section_number == state.section_number:
        return state
    settings = dataclasses.replace(
        state.target, prompts=PromptBlend.single(point.prompt), denoising=point.denoising
    )
    return dataclasses.replace(
        retarget(state, settings, config, bpm), section_number=point.section_number
    )


def _drift(state: WalkState, config: PlannerConfig, bpm: float) -> WalkState:
    """In endless mode, take the next playlist prompt once the current one has had its time."""
    settled = state.transition_done >= state.transition_frames
    due = state.frames_since_change >= config.frames_for(config.endless_prompt_seconds)
    if not (settled and due and state.hold_frames == 0):
        return state
    current = set(state.target.prompts.prompts)
    choices = [prompt for prompt in config.playlist if prompt not in current] or list(config.playlist)
    rng = random.Random(state.rng_state ^ 0x5EED)
    prompt = choices[rng.randrange(len(choices))]
    settings = dataclasses.replace(state.target, prompts=PromptBlend.single(prompt))
    return retarget(state, settings, config, bpm)


class Planner:
    """The walk with its history, so a control change can rewind to the frames still heard.

    ``seed_loop_bpm`` maps seed loop names to their tempo, for transitions given in bars. Not
    thread-safe: the engine calls it under its own lock.
    """

    def __init__(
        self,
        settings: StreamSettings,
        config: PlannerConfig,
        seed_loop_bpm: Mapping[str, float],
    ) -> None:
        self.config = config
        self._seed_loop_bpm = dict(seed_loop_bpm)
        self.plan_version = 0
        self._state = initial_state(settings)
        self._before: dict[int, WalkState] = {}

    @property
    def settings(self) -> StreamSettings:
        return self._state.target

    @property
    def next_index(self) -> int:
        return self._state.next_index

    def next_frames(self, count: int) -> list[PlannedFrame]:
        """Plan the next ``count`` frames (a batch for the generator)."""
        frames = []
        for _ in range(count):
            self._before[self._state.next_index] = self._state
            target = self._state.target
            frame, self._state = plan_next(
                self._state, self.config, self.plan_version, self._bpm(target),
                self._beats(target),
            )
            frames.append(frame)
        return frames

    def change(self, settings: StreamSettings, first_unheard_index: int | None = None) -> None:
        """Head for new settings. Frames from ``first_unheard_index`` on are re-planned (the
        engine has discarded them); by default only frames not yet planned are affected."""
        if first_unheard_index is not None and first_unheard_index in self._before:
            self._state = self._before[first_unheard_index]
        chosen = settings.seed_loop != self._state.target.seed_loop
        self._state = retarget(self._state, settings, self.config, self._bpm(settings))
        self._state = dataclasses.replace(
            self._state,
            seed_loop_chosen=self._state.seed_loop_chosen or chosen,
            hold_frames=self.config.frames_for(self.config.endless_hold_after_control_seconds),
            form_denoising=settings.denoising,
            section_number=-1,  # after the hold, the form comes back at once
        )
        self.plan_version += 1
        for stale in [i for i in self._before if i >= self._state.next_index]:
            del self._before[stale]

    def replan_from(self, index: int) -> None:
        """Plan frames from ``index`` on again, exactly as before: they were lost (the generator
        failed, or made something unplayable), not changed. Unlike :meth:`change`, the transition
        under way and the endless drift's hold go on where they were."""
        if index in self._before:
            self._state = self._before[index]
            self.plan_version += 1
            for stale in [i for i in self._before if i >= index]:
                del self._before[stale]

    def add_seed_loop(self, name: str, bpm: float) -> None:
        """A seed loop made while the stream plays (a capture of the live input)."""
        self._seed_loop_bpm[name] = bpm

    def _bpm(self, settings: StreamSettings) -> float:
        return self._seed_loop_bpm.get(settings.seed_loop, 120.0)

    def _beats(self, settings: StreamSettings) -> int | None:
        """Beats in a frame of the seed loop (None when its tempo is not known)."""
        bpm = self._seed_loop_bpm.get(settings.seed_loop)
        return None if bpm is None else round(bpm * self.config.frame_seconds / 60.0)

    def forget_before(self, index: int) -> None:
        """Drop the history of frames before ``index`` (they have been heard)."""
        for old in [i for i in self._before if i < index]:
            del self._before[old]
