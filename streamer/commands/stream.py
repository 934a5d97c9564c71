"""``streamer serve``, ``play`` and ``render``: one stream, three ways out.

All three share the stream options (``streamer.config``) and the same engine parts; ``serve``
and ``play`` run them live on a clock, ``render`` as fast as the machine allows.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from streamer.commands.live_audio import (
    add_audio_input_options,
    audio_input_config,
    captured_seeds,
    live_audio,
)
from streamer.commands.live_inputs import add_input_options, local_inputs
from streamer.config import StreamConfig, add_stream_options, chosen_model, stream_config_from_args
from streamer.errors import UserError
from streamer.runtime.clocks import DeviceConfig
from streamer.sinks.config import ServerConfig

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
    server_defaults = ServerConfig()  # the one home of these defaults; help shows them
    network.add_argument(
        "--host",
        default=server_defaults.host,
        help="address to listen on (default %(default)s; 0.0.0.0 for all)",
    )
    network.add_argument(
        "--port", type=int, default=server_defaults.port, help="TCP port, 0..65535 (default %(default)s; 0 picks a free one)"
    )
    network.add_argument("--token", help="performer token for control (default: a random one, printed)")
    network.add_argument("--listen-token", help="require this token to listen (default: listening is open)")
    network.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser origin allowed to connect, e.g. https://example.org (repeatable; default any)",
    )
    network.add_argument(
        "--max-connections",
        type=int,
        default=server_defaults.max_connections,
        help="most connections at once (default %(default)s)",
    )
    _add_opus_option(serve)
    serve.add_argument("--play", action="store_true", help="also play on the local sound device")
    add_input_options(serve)
    add_audio_input_options(serve)
    _add_link_option(serve)
    _add_device_options(serve)
    _add_icecast_options(serve)
    _add_duration(serve)
    serve.set_defaults(run=run_serve)

    play = subparsers.add_parser(
        "play",
        help="stream to the local sound device",
        description="Generate the stream and play it on the local sound device.",
    )
    add_stream_options(play)
    play.add_argument("--list-devices", action="store_true", help="list output devices and exit")
    _add_opus_option(play)
    add_input_options(play)
    add_audio_input_options(play)
    _add_link_option(play)
    _add_device_options(play)
    _add_icecast_options(play)
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
    device_defaults = DeviceConfig()  # the one home of these defaults; help shows them
    group = parser.add_argument_group("sound device")
    group.add_argument("--audio-device", metavar="DEVICE", help="output device: index or part of its name (default: system default)")
    group.add_argument(
        "--audio-latency",
        default=device_defaults.latency,
        help="output latency in seconds, or low / high (default %(default)s; high: fewest glitches)",
    )
    group.add_argument(
        "--audio-block-size",
        type=int,
        default=device_defaults.block_samples,
        help="samples per device callback (default %(default)s: the host's choice)",
    )


def _add_opus_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--opus-bitrate",
        type=float,
        metavar="KBIT",
        help="bitrate of the stream's one Opus encoding, which Opus listeners and an Ogg "
        "Icecast mount share, in kbit/s (default 64 for a mono stream, 96 for stereo)",
    )


def _opus_encoding(args: argparse.Namespace):
    """The stream's Opus encoding (a bad --opus-bitrate is refused before the model loads)."""
    from streamer.sinks.opus import OpusEncoding

    return OpusEncoding(args.opus_bitrate)


def _add_icecast_options(parser: argparse.ArgumentParser) -> None:
    """Live commands only: Icecast paces its listeners by the source, so a render (faster than
    real time) would flood it."""
    group = parser.add_argument_group("Icecast (see docs/ICECAST.md)")
    group.add_argument(
        "--icecast",
        metavar="URL",
        help="also send the stream to an Icecast mount, e.g. "
        "icecast://source:PASSWORD@127.0.0.1:8000/stream.ogg (.ogg/.opus: Ogg Opus, .mp3: MP3)",
    )
    group.add_argument("--icecast-format", choices=("ogg", "mp3"), help="the format, when the mount's extension does not say")
    group.add_argument(
        "--icecast-bitrate",
        type=int,
        metavar="KBPS",
        help="an MP3 mount's bitrate in kbit/s (default 128 per channel); an Ogg mount sends "
        "the stream's Opus encoding: --opus-bitrate",
    )
    group.add_argument("--icecast-name", help="the station's name listeners see (default streamer)")
    group.add_argument("--icecast-description", help="the station's description")


def _icecast_config(args: argparse.Namespace):
    """The Icecast output the options ask for, or None."""
    if not args.icecast:
        return None
    from streamer.sinks.icecast_protocol import IcecastConfig

    named = {"name": args.icecast_name, "description": args.icecast_description}
    try:
        return IcecastConfig(
            args.icecast,
            format=args.icecast_format,
            bitrate_kbps=args.icecast_bitrate,
            **{key: value for key, value in named.items() if value is not None},
        )
    except ValueError as error:
        raise UserError(f"--icecast-bitrate: {error}") from None


@contextmanager
def _icecast(args: argparse.Namespace, engine, opus) -> Iterator[None]:
    """Feed the engine's stream to Icecast while the block runs, when asked to; an Ogg mount
    shares ``opus``, the stream's Opus encoding."""
    config = _icecast_config(args)
    if config is None:
        yield
        return
    from streamer.sinks.icecast import IcecastSink

    sink = IcecastSink(config, engine.sample_rate, engine.channels, opus)
    sink.start()
    engine.add_sink(sink)
    print(f"sending to Icecast: {sink.target.listen_url}", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        sink.stop()


def _check_icecast_options(args: argparse.Namespace) -> None:
    """Refuse a bad --icecast before the model loads (minutes), not after."""
    config = _icecast_config(args)
    if config is not None:
        from streamer.sinks.icecast_protocol import target_of

        target_of(config)


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
        "--seconds",
        type=float,
        help="stop after playing this many seconds (wall time from the first frame; default: until "
        "Ctrl-C)",
    )


def _device_config(args: argparse.Namespace):
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
def _until_stopped() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM: the live commands wait on it."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _load_engine(config: StreamConfig, seeds=None):
    """The engine; ``seeds`` (``CapturedSeeds``) lets its frame maker find the captures too."""
    from streamer.runtime.assemble import build_engine, load_diffusion_maker

    return build_engine(config, load_diffusion_maker(config, seeds and seeds.image))


def _wait(stop: threading.Event, seconds: float | None) -> None:
    """Play until a stop request, or for ``seconds`` (``--seconds``) from now if given."""
    deadline = None if not seconds else time.monotonic() + seconds
    while not stop.wait(0.2):
        if deadline is not None and time.monotonic() >= deadline:
            return


def _first_frame_played(engine, stop: threading.Event) -> bool:
    """Wait for the first frame to play; False when a stop request comes first (a slow first
    frame must not hold up Ctrl-C or SIGTERM)."""
    deadline = time.monotonic() + FIRST_FRAME_TIMEOUT_SECONDS
    while not engine.wait_until_playing(0.2):
        if stop.is_set():
            return False
        if time.monotonic() > deadline:
            raise UserError("no frame was generated in time; see the log above")
    return True


def run_serve(args: argparse.Namespace) -> int:
    from streamer.runtime.control import EngineControl
    from streamer.sinks.server import ServerThread, StreamServer

    config = stream_config_from_args(args, chosen_model)
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
    local = local_inputs(args, config)
    audio_in = audio_input_config(args)
    seeds = captured_seeds(audio_in)
    _check_icecast_options(args)
    opus = _opus_encoding(args)
    engine = _load_engine(config, seeds)
    control = EngineControl(engine, _seed_loops(config), {s.name: s for s in config.scenes})
    server = StreamServer(server_config, control, opus=opus)
    server_thread = ServerThread(server)
    with (
        _until_stopped() as stop,
        ExitStack() as inputs,
        _icecast(args, engine, opus),
        _linked(engine, args.link),
        live_audio(audio_in, engine, control, seeds),
    ):
        server_thread.start()
        engine.add_sink(server)
        engine.start()
        try:
            if local is not None:
                inputs.enter_context(local.running(control))
            print(f"streaming at {server.url}", flush=True)
            print(f"performer token: {server.performer_token}", flush=True)
            if _first_frame_played(engine, stop):
                clock = _start_clock(engine, device_config)
                try:
                    _wait(stop, args.seconds)
                finally:
                    clock.stop()
        finally:
            inputs.close()  # no more commands for a stopping engine
            server_thread.stop()  # listeners get their close frame now...
            engine.stop()  # ...not after the frame being made is finished
    print("stopped", file=sys.stderr)
    return 0


def _seed_loops(config: StreamConfig) -> frozenset[str]:
    """The seed loops a performer may switch to: the library's and the stream's own."""
    from streamer.seeds.library import list_seed_loops

    return frozenset(loop.name for loop in list_seed_loops()) | {config.settings.seed_loop}


def _start_clock(engine, device_config):
    """The device callback is the clock when a device plays, else a software clock. Startup's
    objects are frozen first, so that no later full collection stalls it (runtime/heap.py)."""
    from streamer.runtime.clocks import DeviceClock, SoftwareClock
    from streamer.runtime.heap import freeze_startup_objects

    freeze_startup_objects()
    clock = DeviceClock(engine, device_config) if device_config is not None else SoftwareClock(engine)
    clock.start()
    return clock


def run_play(args: argparse.Namespace) -> int:
    from streamer.runtime.clocks import list_devices

    if args.list_devices:
        print(list_devices())
        return 0
    config = stream_config_from_args(args, chosen_model)
    device_config = _device_config(args)
    local = local_inputs(args, config)
    audio_in = audio_input_config(args)
    seeds = captured_seeds(audio_in)
    _check_icecast_options(args)
    opus = _opus_encoding(args)
    engine = _load_engine(config, seeds)
    from streamer.runtime.control import EngineControl

    scenes = {scene.name: scene for scene in config.scenes}
    local_control = EngineControl(engine, _seed_loops(config), scenes)
    with (
        _until_stopped() as stop,
        ExitStack() as inputs,
        _icecast(args, engine, opus),
        _linked(engine, args.link),
        live_audio(audio_in, engine, local_control, seeds),
    ):
        engine.start()
        try:
            if local is not None:
                inputs.enter_context(local.running(local_control))
            if _first_frame_played(engine, stop):
                clock = _start_clock(engine, device_config)
                print("playing; Ctrl-C stops", file=sys.stderr, flush=True)
                try:
                    _wait(stop, args.seconds)
                finally:
                    clock.stop()
        finally:
            inputs.close()  # no more commands for a stopping engine
            engine.stop()
    return 0


def run_render(args: argparse.Namespace) -> int:
    from streamer.generate.generator import UnplayableFrame
    from streamer.runtime.assemble import build_core, levelled, load_diffusion_maker
    from streamer.runtime.render import render_to_file

    if not args.seconds > 0:
        raise UserError(f"--seconds must be positive, got {args.seconds}")
    config = stream_config_from_args(args, chosen_model)
    core = build_core(config)
    maker = levelled(config, load_diffusion_maker(config))
    with _until_stopped() as stop:
        try:
            written = render_to_file(core, maker, args.out, args.seconds, stop)
        except UnplayableFrame as error:  # the same frame would fail again: nothing to retry
            raise UserError(f"the render stopped: {error}") from error
    rate = core.stitcher.config.sample_rate
    print(f"wrote {written / rate:.2f} s to {args.out}", file=sys.stderr)
    return 0
