"""Every number of the WebSocket server that a user can change, with its unit in its name."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from streamer.errors import UserError
from streamer.plan.controls import PromptLimits
from streamer.plan.settings import MAX_PROMPT_CHARS, MAX_PROMPTS

SampleFormat = Literal["s16", "f32"]


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How the stream server listens, whom it lets in and how it paces listeners.

    Defaults suit one performer on a laptop with a room of listeners: loopback only, anyone who
    can reach the port may listen, control needs the performer token.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    #: Token a performer presents (``{"type": "auth", ...}``) before controlling the stream;
    #: ``None`` makes the server generate one at start and print it.
    performer_token: str | None = None
    #: ``None``: anyone who can reach the port may listen. Otherwise a listener must present this
    #: token (or the performer token) before audio and events flow to it.
    listen_token: str | None = None
    max_connections: int = 1000
    #: Largest client text message answered with an error instead of closing; four times this
    #: closes the connection (1009) before it is buffered.
    max_message_bytes: int = 32 * 1024
    max_messages_per_second: float = 30.0
    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_prompts: int = MAX_PROMPTS
    #: Browser origins allowed to open the WebSocket; empty: any. List the player's own origin
    #: too (``http://127.0.0.1:8765``), or browsers opening it from this server are refused. A
    #: request without an Origin header (not a browser) is always allowed: such a client could
    #: send any origin.
    allowed_origins: tuple[str, ...] = ()
    #: Audio a joining listener gets at once, so playback starts without waiting (Icecast's
    #: burst-on-connect).
    burst_seconds: float = 1.0
    #: Audio that may wait in one listener's send queue; beyond it the listener is skipped until
    #: its queue has drained, then resumes at the live edge.
    send_queue_seconds: float = 3.0
    #: Kernel send buffer of each listener's socket (Linux doubles it). Autotuning would let the
    #: kernel hold up to 4 MB (23 s of 44.1 kHz stereo) out of the pacing's sight; 64 KiB still
    #: carries the stream over a 300 ms round trip.
    socket_send_buffer_bytes: int = 64 * 1024
    #: A listener skipped for this long without draining its queue is disconnected.
    drop_lagging_after_seconds: float = 10.0
    #: Audio carried by one network message: longer messages cost less CPU per listener, shorter
    #: ones reach the listener sooner (see benchmarks/RESULTS.md, fanout).
    message_seconds: float = 0.1
    #: Listeners a new spectrogram image (~200 KB) is copied to per turn of the event loop
    #: (about 5 ms of copying at 50); audio messages pass between the turns.
    image_listeners_per_loop_turn: int = 50
    sample_format: SampleFormat = "s16"
    ping_interval_seconds: float = 20.0
    ping_timeout_seconds: float = 20.0

    @property
    def prompt_limits(self) -> PromptLimits:
        """The prompts this server's clients may send."""
        return PromptLimits(self.max_prompt_chars, self.max_prompts)

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be in 0..65535 (0: any free port), got {self.port}")
        for name in (
            "max_connections",
            "max_message_bytes",
            "max_prompt_chars",
            "max_prompts",
            "socket_send_buffer_bytes",
            "image_listeners_per_loop_turn",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in (
            "max_messages_per_second",
            "send_queue_seconds",
            "drop_lagging_after_seconds",
            "message_seconds",
            "ping_interval_seconds",
            "ping_timeout_seconds",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number, got {value}")
        if not (math.isfinite(self.burst_seconds) and self.burst_seconds >= 0):
            problems.append(f"burst_seconds must be zero or more, got {self.burst_seconds}")
        elif self.send_queue_seconds < self.burst_seconds + self.message_seconds:
            problems.append(
                f"send_queue_seconds ({self.send_queue_seconds}) must hold the burst and one "
                f"message ({self.burst_seconds} + {self.message_seconds} s), or every listener "
                "would lag from the start"
            )
        if self.sample_format not in ("s16", "f32"):
            problems.append(f"sample_format must be 's16' or 'f32', got {self.sample_format!r}")
        for name in ("performer_token", "listen_token"):
            token = getattr(self, name)
            if token is not None and len(token) < 8:
                problems.append(f"{name} must have at least 8 characters (use a random one)")
        if problems:
            raise UserError("invalid server settings: " + "; ".join(problems))
