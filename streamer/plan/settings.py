"""What a performer sets: the target the stream walks towards.

Pure values with validation, so the server, the CLI and the config file reject the same bad
input with the same words.
"""

from __future__ import annotations

import dataclasses
import math

#: Longest prompt accepted, in characters. CLIP reads 77 tokens; longer text is truncated by the
#: tokenizer anyway, so a limit only protects memory and the wire.
MAX_PROMPT_CHARS = 500
#: Most prompts in one blend.
MAX_PROMPTS = 8


@dataclasses.dataclass(frozen=True)
class PromptBlend:
    """Prompts with positive weights; the weights are normalised to sum to one on construction,
    so ``[("jazz", 2), ("rock", 2)]`` and ``[("jazz", 1), ("rock", 1)]`` are the same blend."""

    weighted: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        if not self.weighted:
            raise ValueError("a blend needs at least one prompt")
        if len(self.weighted) > MAX_PROMPTS:
            raise ValueError(f"at most {MAX_PROMPTS} prompts in a blend, got {len(self.weighted)}")
        merged: dict[str, float] = {}
        for text, weight in self.weighted:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("a prompt must be non-empty text")
            if len(text) > MAX_PROMPT_CHARS:
                raise ValueError(f"a prompt is at most {MAX_PROMPT_CHARS} characters, got {len(text)}")
            weight = float(weight)
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"prompt weights must be finite and >= 0, got {weight} for {text!r}")
            merged[text.strip()] = merged.get(text.strip(), 0.0) + weight
        total = sum(merged.values())
        if total <= 0:
            raise ValueError("at least one prompt weight must be positive")
        normalised = tuple((text, weight / total) for text, weight in merged.items() if weight > 0)
        object.__setattr__(self, "weighted", normalised)

    @classmethod
    def single(cls, text: str) -> PromptBlend:
        return cls(((text, 1.0),))

    @property
    def dominant(self) -> str:
        """The prompt of the largest weight (the first of equals)."""
        return max(self.weighted, key=lambda item: item[1])[0]

    @property
    def prompts(self) -> tuple[str, ...]:
        return tuple(text for text, _ in self.weighted)

    def weight_of(self, text: str) -> float:
        return dict(self.weighted).get(text, 0.0)

    def mix(self, other: PromptBlend, alpha: float) -> PromptBlend:
        """The blend ``alpha`` of the way from this one to ``other``.

        Text embeddings are blended linearly, so mixing the weights is exactly the same as
        lerping the two blends' embeddings.
        """
        weights: dict[str, float] = {}
        for text, weight in self.weighted:
            weights[text] = weights.get(text, 0.0) + (1.0 - alpha) * weight
        for text, weight in other.weighted:
            weights[text] = weights.get(text, 0.0) + alpha * weight
        return PromptBlend(tuple((t, w) for t, w in weights.items() if w > 1e-9))


@dataclasses.dataclass(frozen=True)
class Transition:
    """How long a change takes: in seconds, or in bars of the seed loop's tempo."""

    seconds: float | None = 8.0
    bars: float | None = None

    def __post_init__(self) -> None:
        given = [value for value in (self.seconds, self.bars) if value is not None]
        if len(given) != 1:
            raise ValueError("give a transition length in seconds or in bars, not both")
        if not math.isfinite(given[0]) or not 0 <= given[0] <= 600:
            raise ValueError(f"a transition lasts 0 to 600 seconds or bars, got {given[0]}")

    def in_seconds(self, bpm: float, beats_per_bar: int = 4) -> float:
        if self.seconds is not None:
            return self.seconds
        assert self.bars is not None
        return self.bars * beats_per_bar * 60.0 / bpm


def check_range(name: str, value: float, low: float, high: float) -> float:
    """``value`` as a float if it lies in [low, high], else a ValueError naming the setting."""
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class StreamSettings:
    """The performer's target. Denoising and guidance travel with the prompts during a
    transition; the seed loop and the negative prompt change at the next frame."""

    prompts: PromptBlend = PromptBlend.single("lo-fi hip hop beat, chill, vinyl crackle")
    negative_prompt: str = ""
    seed: int = 0
    denoising: float = 0.75
    guidance: float = 7.0
    seed_loop: str = "boom_bap_94"
    transition: Transition = Transition()

    def __post_init__(self) -> None:
        check_range("denoising", self.denoising, 0.05, 1.0)
        check_range("guidance", self.guidance, 0.0, 30.0)
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be a whole number from 0 to {2**32 - 1}, got {self.seed!r}")
        if len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"the negative prompt is at most {MAX_PROMPT_CHARS} characters")
