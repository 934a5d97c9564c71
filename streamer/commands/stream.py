"""``streamer serve``, ``play`` and ``render``: one stream, three ways out.

All three share the stream options (``streamer.config``) and the same engine parts; ``serve``
and ``play`` run them live on a clock, ``render`` as fast as the machine allows.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from streamer.config import StreamConfig, add_stream_options, stream_config_from_args
from streamer.errors import UserError

#: Longest wait for the first frame of a live stream.
FIRST_FRAME_TIMEOUT_SECONDS = 600.0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="stream to browsers over WebSocket (and optionally the sound device)",
        description="Generate the stream and serve it: open the printed URL in a browser. "
        "Control needs the performer token, which is printed at start.",
    )
    add_stream_options(serve)
    network = serve.add_argument_group("server")
    network.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    network.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    network.add_argument("--token", help="performer token for control (default: a random one, printed)")
    network.add_argument("--listen-token", help="require this token to listen (default: listening is open)")
    network.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser origin allowed to connect, e.g. https://example.org (repeatable; default any)",
    )
    network.add_argument("--max-connections", type=int, default=1000, help="most connections at once (default 1000)")
    serve.add_argument("--play", action="store_true", help="also play on the local sound device")
    _add_link_option(serve)
    _add_device_options(serve)
    _add_duration(serve)
    serve.set_defaults(run=run_serve)

    play = subparsers.add_parser(
        "play",
        help="stream to the local sound device",
        description="Generate the stream and play it on the local sound device.",
    )
    add_stream_options(play)
    play.add_argument("--list-devices", action="store_true", help="list output devices and exit")
    _add_link_option(play)
    _add_device_options(play)
    _add_duration(play)
    play.set_defaults(run=run_play)

    render = subparsers.add_parser(
        "render",
        help="render the stream to a WAV or FLAC file",
        description="Render the stream offline, as fast as the machine allows, with the same "
        "engine as live. Ctrl-C stops early and still leaves a valid file.",
    )
    add_stream_options(render)
    render.add_argument("--seconds", type=float, required=True, help="length of the file, in seconds")
    render.add_argument("--out", required=True, metavar="FILE", help="output file: .wav or .flac")
    render.set_defaults(run=run_render)


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sound device")
    group.add_argument("--audio-device", metavar="DEVICE", help="output device: index or part of its name (default: system default)")
    group.add_argument(
        "--audio-latency",
        default="high",
        help="output latency in seconds, or low / high (default high: fewest glitches)",
    )
    group.add_argument(
        "--audio-block-size", type=int, default=0, help="samples per device callback (default 0: the host's choice)"
    )


def _add_link_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--link",
        action="store_true",
        help="join the Ableton Link session on the local network and play at its tempo, bar "
        "one on its bar (quantum 4); needs pip install 'streamer[link]' (GPL-3)",
    )


@contextmanager
def _linked(engine, follow: bool) -> Iterator[None]:
    """With ``follow``, the engine plays at the Link session's tempo and phase while inside."""
    if not follow:
        yield
        return
    from streamer.runtime.follow import LinkConfig
    from streamer.runtime.link import LinkSession

    seed_bpm = engine.core.seed_bpm()
    if seed_bpm is None:
        raise UserError(
            "--link needs a seed loop whose tempo is known: pick one of `streamer seeds` "
            "with --seed-loop"
        )
    config = LinkConfig()
    session = LinkSession(engine, seed_bpm, config)
    engine.follow(config)
    session.start()
    try:
        yield
    finally:
        session.stop()


def _add_duration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=float, help="stop after this many seconds of wall time (default: run until Ctrl-C)"
    )


def _device_config(args: argparse.Namespace):
    from streamer.runtime.clocks import DeviceConfig

    device: int | str | None = args.audio_device
    if device is not None and device.isdigit():
        device = int(device)
    latency: float | str = args.audio_latency
    if latency not in ("low", "high"):
        try:
            latency = float(latency)
        except ValueError:
            raise UserError(f"--audio-latency must be seconds, low or high, got {latency!r}") from None
    return DeviceConfig(device=device, block_samples=args.audio_block_size, latency=latency)


@contextmanager
def _until_stopped(seconds: float | None) -> Iterator[threading.Event]:
    """An event set by SIGINT, SIGTERM or after ``seconds``: the live commands wait on it."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    timer = threading.Timer(seconds, stop.set) if seconds else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        yield stop
    finally:
        if timer:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _load_maker(config: StreamConfig):
    from streamer.runtime.assemble import load_diffusion_maker

    print(f"loading {config.model.model} ...", file=sys.stderr, flush=True)
    return load_diffusion_maker(config)


def _load_engine(config: StreamConfig):
    from streamer.runtime.assemble import build_engine

    return build_engine(config, _load_maker(config))


def _wait(stop: threading.Event) -> None:
    while not stop.wait(0.2):
        pass


def run_serve(args: argparse.Namespace) -> int:
    from streamer.runtime.control import EngineControl
    from streamer.seeds.library import list_seed_loops
    from streamer.sinks.config import ServerConfig
    from streamer.sinks.server import ServerThread, StreamServer

    config = stream_config_from_args(args)
    origins = tuple(args.allowed_origin)
    if origins:  # the player page's own origin must stay allowed, or the page cannot connect
        origins += tuple(f"http://{host}:{args.port}" for host in ("127.0.0.1", "localhost", args.host))
    server_config = ServerConfig(
        host=args.host,
        port=args.port,
        performer_token=args.token,
        listen_token=args.listen_token,
        allowed_origins=tuple(dict.fromkeys(origins)),
        max_connections=args.max_connections,
    )
    device_config = _device_config(args) if args.play else None
    engine = _load_engine(config)
    seed_loops = frozenset(loop.name for loop in list_seed_loops()) | {config.settings.seed_loop}
    server = StreamServer(server_config, EngineControl(engine, seed_loops))
    server_thread = ServerThread(server)
    with _until_stopped(args.seconds) as stop, _linked(engine, args.link):
        server_thread.start()
        engine.add_sink(server)
        engine.start()
        try:
            print(f"streaming at {server.url}", flush=True)
            print(f"performer token: {server.performer_token}", flush=True)
            if not engine.wait_until_playing(FIRST_FRAME_TIMEOUT_SECONDS):
                raise UserError("no frame was generated in time; see the log above")
            clock = _start_clock(engine, device_config)
            try:
                _wait(stop)
            finally:
                clock.stop()
        finally:
            server_thread.stop()  # listeners get their close frame now...
            engine.stop()  # ...not after the frame being made is finished
    print("stopped", file=sys.stderr)
    return 0


def _start_clock(engine, device_config):
    """The device callback is the clock when a device plays, else a software clock."""
    from streamer.runtime.clocks import DeviceClock, SoftwareClock

    clock = DeviceClock(engine, device_config) if device_config is not None else SoftwareClock(engine)
    clock.start()
    return clock


def run_play(args: argparse.Namespace) -> int:
    from streamer.runtime.clocks import list_devices

    if args.list_devices:
        print(list_devices())
        return 0
    config = stream_config_from_args(args)
    device_config = _device_config(args)
    engine = _load_engine(config)
    with _until_stopped(args.seconds) as stop, _linked(engine, args.link):
        engine.start()
        try:
            if not engine.wait_until_playing(FIRST_FRAME_TIMEOUT_SECONDS):
                raise UserError("no frame was generated in time; see the log above")
            clock = _start_clock(engine, device_config)
            print("playing; Ctrl-C stops", file=sys.stderr, flush=True)
            try:
                _wait(stop)
            finally:
                clock.stop()
        finally:
            engine.stop()
    return 0


def run_render(args: argparse.Namespace) -> int:
    from streamer.runtime.assemble import build_core
    from streamer.runtime.render import render_to_file

    if not args.seconds > 0:
        raise UserError(f"--seconds must be positive, got {args.seconds}")
    config = stream_config_from_args(args)
    core = build_core(config)
    maker = _load_maker(config)
    with _until_stopped(None) as stop:
        written = render_to_file(core, maker, args.out, args.seconds, stop)
    rate = core.stitcher.config.sample_rate
    print(f"wrote {written / rate:.2f} s to {args.out}", file=sys.stderr)
    return 0
