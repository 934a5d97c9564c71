"""The OSC input: a UDP server that maps each message (``osc_map``) and hands it to the pump.

Replies go back to the sender's address and port, from the server's port, as most OSC apps
expect: ``/streamer/ack s`` (the address applied) and ``/streamer/error s s`` (code, message).
Messages in a bundle are applied at once, in order; time tags are not waited for. Every bad
packet or message gets a log line and an error reply when it can be answered; the stream plays on.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Any

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket, ParseError

from streamer.inputs.desk import PromptDesk
from streamer.inputs.osc_map import osc_command
from streamer.inputs.pump import Applied, CommandPump, Outcome
from streamer.plan.controls import ControlError

logger = logging.getLogger(__name__)

ACK_ADDRESS = "/streamer/ack"
ERROR_ADDRESS = "/streamer/error"
#: How often the server's loop looks whether it is to stop (socketserver polls).
STOP_POLL_SECONDS = 0.05


def osc_message(address: str, *args: Any) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class _Handler(socketserver.BaseRequestHandler):
    server: OscServer

    def handle(self) -> None:
        data, _ = self.request
        self.server.received(data, self.client_address)


class OscServer(socketserver.UDPServer):
    """Listens on ``(host, port)`` (port 0: a free one; ``address`` tells which)."""

    #: Read whole datagrams: socketserver's 8 KiB would cut a long /streamer/prompts short.
    max_packet_size = 65535

    def __init__(self, host: str, port: int, desk: PromptDesk, pump: CommandPump) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.address_family = family
        super().__init__((host, port), _Handler)
        self.desk = desk
        self.pump = pump
        self._thread = threading.Thread(
            target=self.serve_forever, args=(STOP_POLL_SECONDS,), name="streamer-osc", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.server_address[:2]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self._thread.join()
        self.server_close()

    def received(self, data: bytes, sender: tuple[str, int]) -> None:
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except ParseError as error:
            logger.warning("OSC from %s:%s: not an OSC packet (%s)", *sender[:2], error)
            return
        for message in messages:
            self._one(message.address, list(message.params), sender)

    def _one(self, address: str, args: list[Any], sender: tuple[str, int]) -> None:
        try:
            routed = osc_command(address, args, self.desk)
        except ControlError as error:
            logger.warning("OSC %s from %s:%s: %s", address[:80], *sender[:2], error.message)
            self._send(osc_message(ERROR_ADDRESS, str(error.code), error.message), sender)
            return
        if routed is not None:
            self.pump.submit(routed, lambda outcome: self._answer(address, outcome, sender))

    def _answer(self, address: str, outcome: Outcome, sender: tuple[str, int]) -> None:
        if isinstance(outcome, Applied):
            self._send(osc_message(ACK_ADDRESS, address), sender)
        else:  # the pump has logged it
            self._send(osc_message(ERROR_ADDRESS, str(outcome.code), outcome.message), sender)

    def _send(self, data: bytes, to: tuple[str, int]) -> None:
        try:
            self.socket.sendto(data, to)
        except OSError as error:  # the sender went away; nothing to answer
            logger.info("OSC reply to %s:%s failed: %s", *to[:2], error)
