"""Subcommands of the ``streamer`` CLI. Each module adds its parser; importing stays lazy so that
``streamer --help`` does not load torch."""

from __future__ import annotations

import argparse


def register_all(subparsers: argparse._SubParsersAction) -> None:
    from streamer.commands import generate, live_inputs, prepare_audio, seeds, stream, train, training

    seeds.add_parsers(subparsers)
    generate.add_parsers(subparsers)
    stream.add_parsers(subparsers)
    live_inputs.add_parsers(subparsers)
    prepare_audio.add_parsers(subparsers)
    train.add_parsers(subparsers)
    training.add_parsers(subparsers)
