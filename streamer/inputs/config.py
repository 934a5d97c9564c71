"""Every number of the MIDI and OSC inputs that a user can change, with its unit in its name."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class InputConfig:
    #: A fader sends up to ~100 messages a second; the engine gets the latest value of each
    #: target at most this often (a change is heard on a beat anyway, far coarser than this).
    coalesce_seconds: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.coalesce_seconds <= 1:
            raise ValueError(f"coalesce_seconds must be 0 to 1, got {self.coalesce_seconds}")
