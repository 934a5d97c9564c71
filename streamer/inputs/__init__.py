"""The performer's local inputs besides the browser: MIDI controllers and OSC.

Each source maps its messages onto the engine's commands (``streamer.plan.commands``) in a pure
module (``midi_map``, ``osc_map``) built from the control schema (``streamer.plan.controls``),
shares the numbered prompts its faders move (``desk``), and hands the commands to one pump
thread (``pump``) that thins fast fader streams (``coalesce``) and applies them through the
engine's ``StreamControl``. MIDI and OSC are inputs of the
performer's own machine and carry performer rights, as the performer token does on the server.
"""
