"""The MIDI input: a port opened through mido's rtmidi backend, its messages mapped
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
from collections.abc import Callable
from typing import Any

from streamer.errors import UserError
from streamer.inputs.desk import PromptDesk
from streamer.inputs.midi_map import Ignored, MidiMap, MidiOutcome, midi_command
from streamer.inputs.pump import CommandPump
from streamer.sinks.control import ControlError

logger = logging.getLogger(__name__)

VIRTUAL_PORT_NAME = "streamer"


def _backends() -> list[Any]:
    """mido's rtmidi backends, one per system API compiled into python-rtmidi."""
    try:
        import mido
        import rtmidi
    except ImportError:
        raise UserError(
            'MIDI needs mido and python-rtmidi: pip install "streamer[midi]"'
        ) from None
    names = [rtmidi.get_api_name(api) for api in rtmidi.get_compiled_api()]
    apis = {"alsa": "LINUX_ALSA", "core": "MACOSX_CORE", "winmm": "WINDOWS_MM", "jack": "UNIX_JACK"}
    return [mido.Backend(f"mido.backends.rtmidi/{apis[name]}") for name in names if name in apis]


def open_midi_input(port: str | None, callback: Callable[[Any], None]) -> Any:
    """An open mido input calling ``callback(message)`` on rtmidi's thread: the first input
    whose name contains ``port`` (case ignored), or a virtual port ``streamer`` when ``port`` is
    None or empty. Raises UserError naming the ports there are."""
    seen: list[str] = []
    problems: list[str] = []
    for backend in _backends():
        api = backend.api or backend.name
        try:
            if not port:
                return backend.open_input(VIRTUAL_PORT_NAME, virtual=True, callback=callback)
            names = backend.get_input_names()
        except (OSError, RuntimeError) as error:  # rtmidi's errors are OSErrors; no server
            problems.append(f"{api}: {error}")
            continue
        seen += [f"{name} ({api})" for name in names]
        matches = [name for name in names if port.lower() in name.lower()]
        if matches:
            try:
                return backend.open_input(matches[0], callback=callback)
            except (OSError, RuntimeError) as error:
                problems.append(f"{api}: {matches[0]}: {error}")
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
    names = []
    for backend in _backends():
        try:
            names += [f"{name} ({backend.api})" for name in backend.get_input_names()]
        except (OSError, RuntimeError):
            continue
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

    @property
    def name(self) -> str:
        return self.port.name

    def close(self) -> None:
        self.port.close()

    def received(self, message: Any) -> None:
        try:
            outcome = map_message(message, self.mapping, self.desk)
            if isinstance(outcome, ControlError):
                logger.warning("MIDI %s: %s", message, outcome.message)
            elif isinstance(outcome, Ignored):
                self._log_unmapped(outcome)
            else:
                self.pump.submit(outcome)
        except Exception:  # rtmidi's thread must live on, or the controller goes deaf
            logger.exception("MIDI %s could not be handled", message)

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
