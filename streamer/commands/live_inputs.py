"""The MIDI and OSC inputs of ``serve`` and ``play`` (``--midi``, ``--midi-map``, ``--osc``) and
``streamer midi-monitor``, the learn aid that prints what a controller sends and what the
mapping makes of it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from streamer.errors import UserError
from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.ports import StreamControl


def add_input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("MIDI and OSC (performer inputs of this machine)")
    group.add_argument(
        "--midi",
        nargs="?",
        const="",
        metavar="PORT",
        help="listen to the MIDI input whose name contains PORT; without PORT, open a virtual "
        "input called 'streamer' (ALSA, CoreMIDI, JACK) for other programs to connect to",
    )
    group.add_argument("--midi-map", metavar="FILE.toml", help="MIDI mapping (default: see README, On stage)")
    group.add_argument(
        "--osc",
        metavar="[HOST:]PORT",
        help="receive OSC over UDP here (HOST default 127.0.0.1; docs/OSC.md lists the addresses)",
    )


def parse_osc_address(text: str) -> tuple[str, int]:
    """``"9000"``, ``"0.0.0.0:9000"`` or ``"[::1]:9000"`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise UserError(f"--osc takes [HOST:]PORT with PORT 0..65535, e.g. 127.0.0.1:9000; got {text!r}")
    return host, int(port)


def _desk(config: StreamConfig):
    from streamer.inputs.desk import PromptDesk

    return PromptDesk(config.settings.prompts.weighted, {scene.name: scene for scene in config.scenes})


def _midi_map(args: argparse.Namespace, config: StreamConfig):
    from streamer.inputs.midi_map import default_midi_map, read_midi_map

    names = [scene.name for scene in config.scenes]
    return read_midi_map(args.midi_map, names) if args.midi_map else default_midi_map(names)


class LocalInputs:
    """The inputs ``args`` ask for, checked before the model loads (a typo in the map should not
    cost a minute of loading); ``running(control)`` runs them."""

    def __init__(self, args: argparse.Namespace, config: StreamConfig) -> None:
        self.desk = _desk(config)
        self.midi_port = args.midi
        self.midi_map = _midi_map(args, config) if args.midi is not None else None
        self.osc_text = args.osc
        self.osc_address = parse_osc_address(args.osc) if args.osc is not None else None

    @contextmanager
    def running(self, control: StreamControl) -> Iterator[None]:
        """Runs the inputs while the block runs; prints where they listen."""
        from streamer.inputs.config import InputConfig
        from streamer.inputs.pump import CommandPump

        pump = CommandPump(control, InputConfig().coalesce_seconds)
        with ExitStack() as stack:
            pump.start()
            stack.callback(pump.stop)
            if self.osc_address is not None:
                from streamer.inputs.osc_in import OscServer

                try:
                    osc = OscServer(*self.osc_address, self.desk, pump)
                except OSError as error:
                    raise UserError(f"--osc {self.osc_text}: cannot listen there: {error}") from None
                osc.start()
                stack.callback(osc.stop)
                print(f"OSC on udp://{osc.address[0]}:{osc.address[1]} (docs/OSC.md)", flush=True)
            if self.midi_map is not None:
                from streamer.inputs.midi_in import MidiInput

                midi = MidiInput(self.midi_port, self.midi_map, self.desk, pump)
                stack.callback(midi.close)
                print(f"MIDI from {midi.name}", flush=True)
            yield


def local_inputs(args: argparse.Namespace, config: StreamConfig) -> LocalInputs | None:
    """The inputs ``args`` ask for (None: neither --midi nor --osc)."""
    if args.midi is None and args.osc is None:
        return None
    return LocalInputs(args, config)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    monitor = subparsers.add_parser(
        "midi-monitor",
        help="print what a MIDI controller sends and what the mapping makes of it",
        description="Listen to a MIDI input and print each message beside the command the "
        "mapping makes of it (nothing is sent anywhere): find your controller's CC numbers, "
        "then write them into a --midi-map file. Ctrl-C stops.",
    )
    monitor.add_argument("--port", metavar="PORT", help="input whose name contains PORT (default: a virtual 'streamer' input)")
    monitor.add_argument("--list", action="store_true", help="list the MIDI inputs and exit")
    monitor.add_argument("--midi-map", metavar="FILE.toml", help="mapping to show (default: the built-in one)")
    monitor.add_argument("--config", metavar="FILE.toml", help="stream config file: its prompts and scenes")
    monitor.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    monitor.set_defaults(run=run_midi_monitor)


def run_midi_monitor(args: argparse.Namespace) -> int:
    import queue
    import time

    from streamer.config import stream_config_from_args
    from streamer.inputs.midi_in import (
        describe,
        list_midi_inputs,
        map_message,
        open_midi_input,
    )

    if args.list:
        print("\n".join(list_midi_inputs()) or "no MIDI inputs")
        return 0
    config = stream_config_from_args(argparse.Namespace(config=args.config))
    desk = _desk(config)
    mapping = _midi_map(args, config)
    arrived: queue.Queue = queue.Queue()
    port = open_midi_input(args.port, arrived.put)
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    print(f"listening to {port.name}; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                message = arrived.get(timeout=0.2)
            except queue.Empty:
                continue
            print(f"{message}  ->  {describe(map_message(message, mapping, desk))}", flush=True)
    finally:
        port.close()
    return 0
