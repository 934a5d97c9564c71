"""Sinks: where the stream goes once the clock has released it.

The WebSocket server is split the sans-I/O way: ``protocol`` (binary audio and frame messages,
JSON events and replies), ``control`` (client control messages -> typed commands), ``session``
(what one connection may do: auth, rate limit), ``packer`` (clock blocks or Opus packets ->
network messages) and ``pacing`` (when a slow listener is skipped or dropped) are pure; ``opus``
(the one Opus encoding of the stream: soxr + libopus, blocks in, packets out, shared by the
WebSocket listeners and an Ogg Icecast mount) and ``images`` (the lighter waterfall image for
Opus listeners) are codecs without I/O; ``broadcast`` (fan-out on the event loop, one lane of
listeners per codec) and ``server`` (sockets, HTTP, the per-connection loop) are the thin shell.
The Icecast source client likewise: ``icecast_protocol`` (URL, request heads, titles, back-off)
and ``icecast_encoder`` (the Opus encoding's packets -> Ogg pages; blocks -> MP3) are pure;
``icecast`` (the sink, its sender thread and sockets) is the shell.
The interface to the engine is the engine's own (``streamer.runtime.ports``): sinks know the
engine, never the other way round.
"""
