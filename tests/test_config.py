"""Stream options: flags, a TOML file, and clear errors that name the option."""

from __future__ import annotations

import argparse

import pytest

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


def test_defaults_hold_without_options():
    config = parse()
    assert config.settings.seed == 0 and config.planner.endless is True
    assert config.model.model == "riffusion/riffusion-model-v1"


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
    ],
)
def test_bad_values_stop_at_start_with_a_message_naming_the_option(tmp_path, argv, toml, message):
    if toml is not None:
        path = tmp_path / "bad.toml"
        path.write_text(toml)
        argv = [*argv, "--config", str(path)]
    with pytest.raises(UserError, match=message):
        parse(*argv)


def test_a_missing_config_file_is_named():
    with pytest.raises(UserError, match="no such file: nowhere.toml"):
        parse("--config", "nowhere.toml")


def test_help_gives_every_option_a_unit_or_a_choice():
    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings[0]} has no help"
