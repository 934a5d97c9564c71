"""The live audio input of ``serve`` and ``play`` (``--input`` and the capture options): options,
checks before the model loads, and running it beside the engine."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streamer.errors import UserError


def add_audio_input_options(parser: argparse.ArgumentParser) -> None:
    from streamer.runtime.capture import AudioInputConfig

    defaults = AudioInputConfig()  # the one home of these defaults; help shows them
    group = parser.add_argument_group("live audio in (capture the band as the seed loop)")
    group.add_argument(
        "--input",
        nargs="?",
        const="",
        metavar="DEVICE",
        help="listen to this input device (index or part of its name; alone: the system "
        "default; JACK where its server runs) so that `capture` can take its last bars",
    )
    group.add_argument(
        "--input-channel",
        type=int,
        default=defaults.channel,
        help="the input channel to capture, 1..64 (at most the device's; default %(default)s)",
    )
    group.add_argument(
        "--input-latency",
        type=float,
        metavar="SECONDS",
        help="seconds from a sound to its sample arriving (default: what the device reports); "
        "raise it if captures start late, lower it if early",
    )
    group.add_argument(
        "--capture-every",
        type=int,
        metavar="BARS",
        help="also capture by itself every BARS bars (the last BARS bars, at most 8)",
    )
    group.add_argument(
        "--capture-dir",
        type=Path,
        metavar="DIR",
        help="also save each capture as DIR/captured-N.png, a seed `--seed-loop` plays again",
    )
    group.add_argument(
        "--keep-captures",
        type=int,
        default=defaults.kept_captures,
        help="captures kept in memory, 2..64 (default %(default)s; the oldest go first)",
    )


def audio_input_config(args: argparse.Namespace) -> Any:
    """The ``AudioInputConfig`` the options ask for, or None without ``--input``; bad values
    are refused before the model loads."""
    from streamer.runtime.capture import AudioInputConfig

    if args.input is None:
        for option in ("capture_every", "capture_dir", "input_latency"):
            if getattr(args, option) is not None:
                raise UserError(f"--{option.replace('_', '-')} needs --input")
        return None
    if args.capture_dir is not None and not args.capture_dir.is_dir():
        raise UserError(f"--capture-dir {args.capture_dir} is not a folder; create it first")
    device: int | str | None = args.input or None
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        return AudioInputConfig(
            device=device,
            channel=args.input_channel,
            latency_seconds=args.input_latency,
            kept_captures=args.keep_captures,
            capture_dir=args.capture_dir,
            every_bars=args.capture_every,
        )
    except ValueError as error:
        raise UserError(str(error)) from None


def captured_seeds(config: Any) -> Any:
    """Where captures are kept (None without ``--input``)."""
    if config is None:
        return None
    from streamer.runtime.captured_seeds import CapturedSeeds

    try:
        return CapturedSeeds(config.kept_captures, config.capture_dir)
    except ValueError as error:
        raise UserError(f"--keep-captures: {error}") from None


@contextmanager
def live_audio(config: Any, engine: Any, control: Any, seeds: Any) -> Iterator[None]:
    """Listen to the input and answer captures (``control.capturer``) while the block runs."""
    if config is None:
        yield
        return
    from streamer.runtime.capture import AudioInput, Capturer

    audio_input = AudioInput(config)
    audio_input.start()
    capturer = Capturer(engine, audio_input, seeds, control.use_seed_loop, config.every_bars)
    control.capturer = capturer
    engine.input_level = lambda: audio_input.level(engine.config.status_interval_seconds)
    capturer.start()
    print(
        f"listening to the input at {audio_input.sample_rate} Hz; capture with the page's "
        "button, /streamer/capture or the capture pad",
        file=sys.stderr,
        flush=True,
    )
    try:
        yield
    finally:
        capturer.stop()
        audio_input.stop()
