"""Stream options: flags, a TOML file, and clear errors that name the option."""

from __future__ import annotations

import argparse
import re

import pytest

from streamer.cli import build_parser
from streamer.config import add_stream_options, parse_prompt, stream_config_from_args
from streamer.errors import UserError
from streamer.plan.settings import PromptBlend


def parse(*argv: str):
    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    return stream_config_from_args(parser.parse_args(list(argv)))


def test_prompts_take_optional_weights():
    assert parse_prompt("jazz piano:2") == ("jazz piano", 2.0)
    assert parse_prompt("ratio 3:4 time") == ("ratio 3:4 time", 1.0)
    assert parse_prompt("lo-fi") == ("lo-fi", 1.0)
    config = parse("--prompt", "jazz:3", "--prompt", "rain")
    assert config.settings.prompts == PromptBlend((("jazz", 0.75), ("rain", 0.25)))


def test_a_toml_file_fills_in_and_flags_win(tmp_path):
    path = tmp_path / "stream.toml"
    path.write_text(
        'model = "/models/riffusion"\nprompt = ["deep house:2", "rain"]\nseed-loop = "house_117"\n'
        "transition_seconds = 4\nseed = 7\nendless = false\nlookahead_frames = 3\n"
        'playlist = ["a", "b"]\n'
    )
    config = parse("--config", str(path), "--seed", "9")
    assert config.model.model == "/models/riffusion"
    assert config.settings.prompts.weight_of("deep house") == pytest.approx(2 / 3)
    assert config.settings.seed_loop == "house_117"
    assert config.settings.transition.seconds == 4.0
    assert config.settings.seed == 9, "the flag wins over the file"
    assert config.planner.endless is False and config.planner.playlist == ("a", "b")
    assert config.engine.lookahead_frames == 3


def test_quantize_comes_from_a_flag_or_the_file_and_is_checked(tmp_path):
    assert parse().stitcher.quantize == "beat"
    assert parse("--quantize", "bar").stitcher.quantize == "bar"
    path = tmp_path / "stream.toml"
    path.write_text('quantize = "off"\n')
    assert parse("--config", str(path)).stitcher.quantize == "off"
    path.write_text('quantize = "phrase"\n')
    with pytest.raises(UserError, match="--quantize: .*quantize must be one of bar, beat, off"):
        parse("--config", str(path))


def test_the_cpu_runtime_comes_from_a_flag_or_the_file_and_is_checked(tmp_path):
    assert parse().model.cpu_runtime == "auto"
    assert parse("--cpu-runtime", "torch").model.cpu_runtime == "torch"
    path = tmp_path / "stream.toml"
    path.write_text('cpu-runtime = "openvino"\n')
    assert parse("--config", str(path)).model.cpu_runtime == "openvino"
    path.write_text('cpu-runtime = "onnx"\n')
    with pytest.raises(UserError, match="cpu_runtime must be one of auto, torch, openvino"):
        parse("--config", str(path))


def test_defaults_hold_without_options():
    config = parse()
    assert config.settings.seed == 0 and config.planner.endless is True
    assert config.model.model == "auto"


@pytest.mark.parametrize(
    ("argv", "toml", "message"),
    [
        (["--denoising", "3"], None, "denoising must be between"),
        (["--prompt", "jazz:-1"], None, "--prompt"),
        (["--transition-seconds", "1", "--transition-bars", "2"], None, "seconds or in bars"),
        (["--lookahead-frames", "0"], None, "lookahead_frames"),
        (["--steps", "0"], None, "--steps: num_inference_steps must be at least 1"),
        ([], "seed = 'seven'\n", "option 'seed' must be int"),
        ([], "tempo = 120\n", "unknown option 'tempo'"),
        ([], "prompt = [1, 2]\n", "option 'prompt' must be a string or a list of strings"),
        ([], "seed = \n", "is not valid TOML"),
        ([], "[scenes.drop]\ndenoising = 3\n", "scenes.drop: denoising must be between"),
        ([], "[scenes.drop]\ntempo = 1\n", "unknown option 'scenes.drop.tempo'"),
        ([], "[scenes.drop]\nseed = 'x'\n", "option 'scenes.drop.seed' must be int"),
        ([], "[scenes.drop]\nseed_loop = 'polka'\n", "scenes.drop.seed_loop: no seed loop called 'polka'"),
        ([], "scenes = 1\n", r"scenes must be tables: \[scenes.NAME\]"),
    ],
)
def test_bad_values_stop_at_start_with_a_message_naming_the_option(tmp_path, argv, toml, message):
    if toml is not None:
        path = tmp_path / "bad.toml"
        path.write_text(toml)
        argv = [*argv, "--config", str(path)]
    with pytest.raises(UserError, match=message):
        parse(*argv)


def test_scenes_come_from_the_config_file_in_its_order(tmp_path):
    path = tmp_path / "stream.toml"
    path.write_text(
        'prompt = "jazz"\n'
        '[scenes.intro]\nprompt = ["soft piano:2", "rain"]\nseed-loop = "house_117"\n'
        "transition_bars = 4\n"
        '[scenes.drop]\nprompt = "808 bass"\ndenoising = 0.9\n'
    )
    intro, drop = parse("--config", str(path)).scenes
    assert intro.name == "intro" and intro.prompts == PromptBlend((("soft piano", 2), ("rain", 1)))
    assert intro.seed_loop == "house_117" and intro.transition.bars == 4.0
    assert intro.denoising is None, "a scene sets only what it names"
    assert drop.name == "drop" and drop.denoising == 0.9 and drop.transition is None


def test_a_missing_config_file_is_named():
    with pytest.raises(UserError, match="no such file: nowhere.toml"):
        parse("--config", "nowhere.toml")


#: A unit, a count noun, or a range (``0..30``, ``>= 0``) in a number option's help.
UNIT_OR_RANGE = re.compile(
    r"\b(seconds?|ms|Hz|kHz|dB|kbit/s|frames?|samples?|steps?|beats?|bars|bytes|connections)\b"
    r"|%|\d\.\.\d|>= ?\d"
)
#: Alternatives listed in the help of a text option: "fp16, bf16 or fp32", "low / high".
LISTED_CHOICES = re.compile(r"\w[\w:+.-]*(, \w[\w:+.-]*)* (or|/) \w")
#: Options whose value is free: text, a name, a path, a token, an address. No unit applies.
FREE_VALUES = {
    "--prompt", "--to-prompt", "--negative-prompt", "--seed-loop", "--model", "--model-config",
    "--lora", "--config", "--out", "--token", "--listen-token", "--host", "--allowed-origin",
    "--audio-device", "--midi", "--midi-map", "--osc", "midi-monitor --port", "--icecast",
    "--icecast-name", "--icecast-description", "--input", "--capture-dir",
}  # fmt: skip


def every_option() -> list[tuple[str, argparse.Action]]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        (f"{name} {action.option_strings[-1]}", action)
        for name, command in commands.choices.items()
        for action in command._actions
        if action.option_strings and action.dest != "help"
    ]


@pytest.mark.parametrize(("option", "action"), every_option(), ids=lambda x: x if isinstance(x, str) else "")
def test_help_gives_every_option_a_unit_or_a_choice(option: str, action: argparse.Action) -> None:
    """A number says what it counts or measures; a choice says what may be chosen."""
    text = (action.help or "") % vars(action)  # as argparse shows it: %(default)s filled in
    name = action.option_strings[-1]
    if action.nargs == 0 or {name, option} & FREE_VALUES or action.choices is not None:
        # a switch, a free value, or choices that argparse lists itself ({a,b,c})
        assert text, f"{option} has no help"
    elif action.type in (int, float):
        assert UNIT_OR_RANGE.search(text), f"{option}: {text!r} names no unit or range"
    else:
        assert LISTED_CHOICES.search(text), f"{option}: {text!r} lists no choices"
