"""The MIDI input: a port opened with python-rtmidi, its messages parsed by mido, mapped
(``midi_map``) and handed to the pump.

rtmidi calls back on its own thread; the callback maps and submits, which takes microseconds and
never waits on the engine. ALSA (Linux), CoreMIDI (macOS), Windows MM and JACK MIDI are tried in
rtmidi's order; the first that works and has the port wins. Without a port name, a virtual input
called ``streamer`` is opened where the system allows (ALSA, CoreMIDI, JACK; not Windows), for
other programs to connect to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from streamer.errors import UserError
from streamer.inputs.desk import PromptDesk
from streamer.inputs.midi_map import Ignored, MidiMap, MidiOutcome, midi_command
from streamer.inputs.pump import CommandPump
from streamer.plan.controls import ControlError

logger = logging.getLogger(__name__)

VIRTUAL_PORT_NAME = "streamer"


def _rtmidi() -> Any:
    try:
        import mido  # noqa: F401 (parses what rtmidi delivers)
        import rtmidi
    except ImportError:
        raise UserError('MIDI needs mido and python-rtmidi: pip install "streamer[midi]"') from None
    return rtmidi


def _apis(rtmidi: Any) -> list[int]:
    """The system MIDI APIs compiled into python-rtmidi, in its order (JACK last)."""
    return [api for api in rtmidi.get_compiled_api() if api != rtmidi.API_RTMIDI_DUMMY]


def midi_message(raw: Sequence[int]) -> Any:
    """The ``mido.Message`` in ``raw``; ValueError for bytes that are none (mido itself raises
    IndexError for a truncated one)."""
    import mido

    try:
        return mido.Message.from_bytes(raw)
    except (ValueError, IndexError, TypeError) as error:
        raise ValueError(str(error) or type(error).__name__) from None


class MidiPort:
    """An open rtmidi input that parses each message with mido and calls ``received`` with it
    on rtmidi's thread. Bytes that are no MIDI message are logged and dropped (mido's own port
    would drop them silently)."""

    def __init__(self, midi_in: Any, name: str, received: Callable[[Any], None]) -> None:
        self._midi_in = midi_in
        self.name = name
        self._received = received
        midi_in.ignore_types(sysex=True, timing=True, active_sense=True)
        midi_in.set_callback(self._callback)

    def _callback(self, event: tuple[list[int], float], data: object = None) -> None:
        raw, _ = event
        try:
            message = midi_message(raw)
        except ValueError as error:
            logger.warning("MIDI from %s: bytes %s are no MIDI message (%s)", self.name, bytes(raw).hex(" "), error)
            return
        try:
            self._received(message)
        except Exception:  # rtmidi's thread must live on, or the controller goes deaf
            logger.exception("MIDI %s could not be handled", message)

    def close(self) -> None:
        self._midi_in.cancel_callback()
        self._midi_in.close_port()
        self._midi_in.delete()


def open_midi_input(port: str | None, received: Callable[[Any], None]) -> MidiPort:
    """An open input calling ``received(message)`` on rtmidi's thread: the first input whose name
    contains ``port`` (case ignored), or a virtual input ``streamer`` when ``port`` is None or
    empty. Raises UserError naming the inputs there are."""
    rtmidi = _rtmidi()
    seen: list[str] = []
    problems: list[str] = []
    for api in _apis(rtmidi):
        api_name = rtmidi.get_api_name(api)
        try:
            midi_in = rtmidi.MidiIn(rtapi=api, name="streamer")
        except rtmidi.RtMidiError as error:  # no ALSA sequencer, no JACK server
            problems.append(f"{api_name}: {error}")
            continue
        try:
            if not port:
                midi_in.open_virtual_port(VIRTUAL_PORT_NAME)
                return MidiPort(midi_in, f"{VIRTUAL_PORT_NAME} (virtual, {api_name})", received)
            names = midi_in.get_ports()
            seen += [f"{name} ({api_name})" for name in names]
            matches = [i for i, name in enumerate(names) if port.lower() in name.lower()]
            if matches:
                midi_in.open_port(matches[0])
                return MidiPort(midi_in, names[matches[0]], received)
        except rtmidi.RtMidiError as error:
            problems.append(f"{api_name}: {error}")
        midi_in.delete()
    if not port:
        raise UserError(
            "could not open a virtual MIDI input here ("
            + "; ".join(problems)
            + "); name a port with --midi PORT (streamer midi-monitor --list shows them)"
        )
    listed = ", ".join(seen) or "none"
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise UserError(f"no MIDI input's name contains {port!r}; inputs: {listed}{detail}")


def list_midi_inputs() -> list[str]:
    rtmidi = _rtmidi()
    names = []
    for api in _apis(rtmidi):
        try:
            midi_in = rtmidi.MidiIn(rtapi=api)
        except rtmidi.RtMidiError:
            continue
        names += [f"{name} ({rtmidi.get_api_name(api)})" for name in midi_in.get_ports()]
        midi_in.delete()
    return names


def describe(outcome: MidiOutcome | ControlError) -> str:
    """One line saying what the mapping makes of a message (the monitor prints it)."""
    if isinstance(outcome, ControlError):
        return f"refused: {outcome.message}"
    if isinstance(outcome, Ignored):
        return f"ignored: {outcome.reason}"
    return repr(outcome.command)


def map_message(message: Any, mapping: MidiMap, desk: PromptDesk) -> MidiOutcome | ControlError:
    try:
        return midi_command(message, mapping, desk)
    except ControlError as error:
        return error


class MidiInput:
    """Maps each message of an open port and submits it to ``pump``; bad input is logged (an
    unmapped control once, so a fader on it does not flood the log) and the stream plays on."""

    def __init__(self, port: str | None, mapping: MidiMap, desk: PromptDesk, pump: CommandPump) -> None:
        self.mapping = mapping
        self.desk = desk
        self.pump = pump
        self._unmapped_logged: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self.port = open_midi_input(port, self.received)
        self.name = self.port.name

    def close(self) -> None:
        self.port.close()

    def received(self, message: Any) -> None:
        outcome = map_message(message, self.mapping, self.desk)
        if isinstance(outcome, ControlError):
            logger.warning("MIDI %s: %s", message, outcome.message)
        elif isinstance(outcome, Ignored):
            self._log_unmapped(outcome)
        else:
            self.pump.submit(outcome)

    def _log_unmapped(self, ignored: Ignored) -> None:
        if ignored.unmapped is None:
            return
        with self._lock:
            if ignored.unmapped in self._unmapped_logged:
                return
            self._unmapped_logged.add(ignored.unmapped)
        logger.warning(
            "MIDI: %s (logged once; `streamer midi-monitor` shows what arrives, --midi-map maps it)",
            ignored.reason,
        )
