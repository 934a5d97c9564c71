"""``streamer prepare-audio FOLDER DIR``: the user's own music as a data set to fine-tune on."""

from __future__ import annotations

import argparse

from streamer.errors import UserError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    prepare = subparsers.add_parser(
        "prepare-audio",
        help="turn a folder of your own music into a data set to fine-tune the built-in model on",
        description="Cut every WAV, FLAC and OGG file under FOLDER (nested folders too) into "
        "consecutive whole-beat 5.12 s loops, as make-seed does, and write them with captions "
        "into DIR as a data set: train/ and a held-out test/. A caption comes from SONG.txt "
        "next to SONG.wav, else from a captions.txt (lines 'FILE: caption') or captions.csv "
        "(rows 'FILE,caption') in the file's folder or above, else from the folder names "
        "(my-band/ambient/x.wav -> 'my band, ambient'). Then fine-tune: streamer train DIR "
        "--init builtin.",
    )
    prepare.add_argument("folder", metavar="FOLDER", help="folder that holds your music")
    prepare.add_argument("directory", metavar="DIR", help="data set folder to write (new or empty)")
    prepare.add_argument(
        "--bpm",
        type=float,
        help="tempo of every file in beats per minute (default: estimated for each file)",
    )
    prepare.add_argument(
        "--held-out-fraction",
        type=float,
        default=None,
        help="share of the loops held out, never trained on, 0.1..0.5 (default 0.1)",
    )
    prepare.set_defaults(run=run_prepare_audio)


def run_prepare_audio(args: argparse.Namespace) -> int:
    from streamer.training.user_audio import PreparedFile, UserAudioConfig, prepare_user_audio

    fields = {"bpm": args.bpm, "held_out_fraction": args.held_out_fraction}
    try:
        config = UserAudioConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValueError as error:
        raise UserError(f"--held-out-fraction: {error}") from None

    def report(done: PreparedFile) -> None:
        if done.skipped:
            print(f"{done.path}: skipped, {done.skipped}", flush=True)
            return
        tempo = f"at {done.bpm:.2f} BPM ({done.beats} beats)" if done.bpm else "unstretched"
        caption = done.caption.text
        print(f"{done.path}: {done.loops} loop(s) {tempo}, caption {caption!r}", flush=True)

    prepared = prepare_user_audio(args.folder, args.directory, config, report=report)
    clips = sum(done.loops for done in prepared)
    print(
        f"wrote {clips} loops to {args.directory}; fine-tune on them with "
        f"`streamer train {args.directory} --init builtin`"
    )
    return 0
