"""The wire protocol's pure core: binary messages, control parsing, sessions, pacing, packing."""

from __future__ import annotations

import dataclasses
import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import UserError
from streamer.sinks.config import ServerConfig
from engine_events import now_playing, status
from streamer.plan.commands import (
    Pause,
    Prompt,
    RecallScene,
    Resume,
    SetDenoising,
    SetGuidance,
    SetNegativePrompt,
    SetPrompts,
    SetSeed,
    SetSeedLoop,
    SetTransition,
    Skip,
)
from streamer.plan.controls import ControlError, ErrorCode
from streamer.sinks.control import Auth, parse_client_message
from streamer.sinks.packer import AudioPacker, EncodedBlock
from streamer.sinks.pacing import ListenerPacing, Verdict
from streamer.sinks.protocol import (
    AudioMessage,
    FrameMessage,
    MessageFormatError,
    audio_messages_contiguous,
    decode_binary,
    encode_samples,
    error_text,
    event_text,
)
from streamer.sinks.session import (
    Admission,
    Apply,
    ControlSession,
    Disconnect,
    MessageRate,
    Reply,
    Role,
    StartListening,
)

CONFIG = ServerConfig()
PERFORMER_TOKEN = "performer-secret-token"


# ---- binary messages ---------------------------------------------------------------------------


def test_audio_header_bytes_match_the_documented_layout() -> None:
    message = AudioMessage(
        sequence=7,
        sample_position=2**40 + 3,  # beyond 32 bits: a stream left running for days
        sample_rate=44100,
        channels=2,
        sample_format="s16",
        payload=b"\x01\x00\x02\x00\x03\x00\x04\x00",
    )
    expected_header = bytes(
        [1, 1, 24, 0]  # version, kind audio, header bytes (u16 LE)
        + [7, 0, 0, 0]  # sequence u32
        + [3, 0, 0, 0, 0, 1, 0, 0]  # sample position u64
        + [0x44, 0xAC, 0, 0]  # 44100 u32
        + [2, 0]  # channels u16
        + [1, 0]  # sample format s16
    )
    assert message.encode() == expected_header + message.payload
    assert message.num_frames == 2


def test_frame_header_bytes_match_the_documented_layout() -> None:
    encoded = FrameMessage(frame_id=5, sample_position=225792, png=b"\x89PNG").encode()
    assert encoded == bytes([1, 2, 16, 0, 5, 0, 0, 0]) + struct.pack("<Q", 225792) + b"\x89PNG"


@settings(max_examples=200)
@given(
    sequence=st.integers(0, 2**32 - 1),
    position=st.integers(0, 2**64 - 1),
    rate=st.integers(1, 2**32 - 1),
    channels=st.integers(1, 8),
    sample_format=st.sampled_from(["s16", "f32"]),
    frames=st.integers(0, 64),
)
def test_audio_messages_decode_to_what_was_encoded(
    sequence: int, position: int, rate: int, channels: int, sample_format: str, frames: int
) -> None:
    width = 2 if sample_format == "s16" else 4
    size = frames * channels * width
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    message = AudioMessage(sequence, position, rate, channels, sample_format, payload)
    assert decode_binary(message.encode()) == message


@settings(max_examples=100)
@given(
    frame_id=st.integers(0, 2**32 - 1),
    position=st.integers(0, 2**64 - 1),
    png=st.binary(max_size=64),
)
def test_frame_messages_decode_to_what_was_encoded(
    frame_id: int, position: int, png: bytes
) -> None:
    message = FrameMessage(frame_id, position, png)
    assert decode_binary(message.encode()) == message


EMPTY_AUDIO = AudioMessage(0, 0, 44100, 1, "s16", b"").encode()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x01\x01", "shorter than a header"),
        (b"\x02\x01\x18\x00" + bytes(20), "version 2"),
        (b"\x01\x07\x04\x00", "kind 7"),
        (b"\x01\x01\x18\x00" + bytes(10), "truncated"),
        (b"\x01\x01\x10\x00" + bytes(20), "truncated"),  # header shorter than version 1's
        (AudioMessage(0, 0, 44100, 2, "s16", bytes(6)).encode(), "whole sample frames"),
        (EMPTY_AUDIO[:22] + b"\x09\x00", "sample format code 9"),
        (EMPTY_AUDIO[:20] + b"\x00\x00\x01\x00", "0 channels"),
    ],
)
def test_malformed_binary_messages_are_refused_with_the_reason(data: bytes, problem: str) -> None:
    with pytest.raises(MessageFormatError, match=problem):
        decode_binary(data)


def test_a_longer_header_from_a_later_revision_is_skipped_to_the_payload() -> None:
    encoded = AudioMessage(1, 2, 48000, 1, "s16", b"\x10\x00").encode()
    grown = encoded[:2] + struct.pack("<H", 28) + encoded[4:24] + b"\xff" * 4 + encoded[24:]
    assert decode_binary(grown).payload == b"\x10\x00"


def test_int16_samples_are_interleaved_rounded_and_clipped_symmetrically() -> None:
    samples = np.array([[1.0, -1.0, 0.5, 2.0], [0.0, 1e-5, -0.5, -3.0]], dtype=np.float32)
    values = np.frombuffer(encode_samples(samples, "s16"), dtype="<i2")
    assert values.tolist() == [32767, 0, -32767, 0, 16384, -16384, 32767, -32767]


def test_float32_samples_survive_the_round_trip_exactly() -> None:
    samples = np.random.default_rng(0).uniform(-1, 1, size=(2, 100)).astype(np.float32)
    message = AudioMessage(0, 0, 44100, 2, "f32", encode_samples(samples, "f32"))
    np.testing.assert_array_equal(decode_binary(message.encode()).samples(), samples)


def test_int16_samples_come_back_within_half_a_step() -> None:
    samples = np.random.default_rng(1).uniform(-1, 1, size=(1, 1000)).astype(np.float32)
    message = AudioMessage(0, 0, 44100, 1, "s16", encode_samples(samples, "s16"))
    assert np.max(np.abs(message.samples() - samples)) <= 0.5 / 32767 + 1e-7


def test_contiguity_needs_both_sequence_and_sample_position() -> None:
    def message(sequence: int, position: int) -> AudioMessage:
        return AudioMessage(sequence, position, 44100, 1, "s16", bytes(2 * 10))

    assert audio_messages_contiguous([message(0, 0), message(1, 10), message(2, 20)])
    assert not audio_messages_contiguous([message(0, 0), message(2, 10)])  # listener skipped
    assert not audio_messages_contiguous([message(0, 0), message(1, 30)])  # stream jumped
    assert audio_messages_contiguous([message(2**32 - 1, 0), message(0, 10)])  # sequence wraps


def test_events_must_be_engine_events_and_hold_no_nan() -> None:
    event = status("behind", lookahead_seconds=2.5)
    assert json.loads(event_text(event)) == {
        "type": "status",
        "state": "behind",
        "lookahead_seconds": 2.5,
        "seconds_per_frame": 0.5,
        "frames_made": 1,
        "underrun_samples": 0,
        "making_seconds": 0.0,
        "advice": None,
        "input": None,
    }
    playing = json.loads(event_text(now_playing(7, 441, prompts=(("jazz", 0.25), ("rain", 0.75)))))
    assert playing["type"] == "now_playing" and playing["frame_id"] == 7
    assert playing["prompts"] == [{"text": "jazz", "weight": 0.25}, {"text": "rain", "weight": 0.75}]
    with pytest.raises(ValueError, match="not an engine event"):
        event_text({"type": "status", "state": "ok"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        event_text(dataclasses.replace(event, lookahead_seconds=math.nan))


# ---- control messages --------------------------------------------------------------------------


INVALID = ErrorCode.INVALID_VALUE


def parse(message: object) -> object:
    return parse_client_message(json.dumps(message), CONFIG).body


@pytest.mark.parametrize(
    ("message", "command"),
    [
        (
            {
                "type": "set_prompts",
                "prompts": [{"text": "jazz piano", "weight": 1}, {"text": "ブルース 🎷", "weight": 0.25}],
            },
            SetPrompts((Prompt("jazz piano", 1.0), Prompt("ブルース 🎷", 0.25))),
        ),
        ({"type": "set_negative_prompt", "text": ""}, SetNegativePrompt("")),
        ({"type": "set_seed", "seed": 4294967295}, SetSeed(4294967295)),
        ({"type": "set_denoising", "denoising": 0.75}, SetDenoising(0.75)),
        ({"type": "set_guidance", "guidance": 7}, SetGuidance(7.0)),
        ({"type": "set_seed_loop", "name": "og_beat"}, SetSeedLoop("og_beat")),
        ({"type": "set_transition", "seconds": 5.12}, SetTransition(seconds=5.12)),
        ({"type": "set_transition", "bars": 4}, SetTransition(bars=4.0)),
        ({"type": "pause"}, Pause()),
        ({"type": "resume"}, Resume()),
        ({"type": "skip"}, Skip()),
        ({"type": "recall_scene", "name": "drop"}, RecallScene("drop")),
        ({"type": "auth", "token": "abc"}, Auth("abc")),
    ],
)
def test_each_control_message_becomes_its_typed_command(message: dict, command: object) -> None:
    assert parse(message) == command


def test_the_request_id_is_kept_for_the_reply() -> None:
    assert parse_client_message('{"type":"skip","id":"k-1"}', CONFIG).request_id == "k-1"
    assert parse_client_message('{"type":"skip","id":42}', CONFIG).request_id == 42
    with pytest.raises(ControlError) as error:
        parse_client_message('{"type":"set_seed","seed":-1,"id":9}', CONFIG)
    refusal = (error.value.code, error.value.of, error.value.request_id)
    assert refusal == (ErrorCode.INVALID_VALUE, "set_seed", 9)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", ErrorCode.BAD_JSON),
        ("{", ErrorCode.BAD_JSON),
        ('{"type":"set_guidance","guidance":NaN}', ErrorCode.BAD_JSON),
        ('{"type":"set_guidance","guidance":Infinity}', ErrorCode.BAD_JSON),
        ('{"type":"skip","type":"pause"}', ErrorCode.BAD_JSON),  # duplicate key: ambiguous
        ("[" * 100_000 + "]" * 100_000, ErrorCode.BAD_JSON),
        ('{"type":"set_seed","seed":' + "9" * 5000 + "}", ErrorCode.BAD_JSON),
        ("[]", ErrorCode.BAD_MESSAGE),
        ('"skip"', ErrorCode.BAD_MESSAGE),
        ("{}", ErrorCode.BAD_MESSAGE),
        ('{"type":3}', ErrorCode.BAD_MESSAGE),
        ('{"type":"explode"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"skip","force":true}', ErrorCode.UNKNOWN_FIELD),
        ('{"type":"set_seed"}', ErrorCode.MISSING_FIELD),
        ('{"type":"set_seed","seed":true}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_seed","seed":1.0}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_seed","seed":4294967296}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_denoising","denoising":1.01}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_denoising","denoising":"0.5"}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_guidance","guidance":1e999}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_guidance","guidance":[7]}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_prompts","prompts":[]}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_prompts","prompts":{"text":"a","weight":1}}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_prompts","prompts":[{"text":"a","weight":0}]}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_prompts","prompts":[{"text":"a","weight":-1}]}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_prompts","prompts":[{"text":"  ","weight":1}]}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_prompts","prompts":[{"text":"a"}]}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_prompts","prompts":[{"text":"a","weight":1,"x":2}]}', INVALID),
        ('{"type":"set_prompts","prompts":[{"text":{"nested":"a"},"weight":1}]}', INVALID),
        ('{"type":"set_prompts","prompts":[{"text":"a\\u0000b","weight":1}]}', INVALID),
        ('{"type":"set_prompts","prompts":[{"text":"lone \\ud800","weight":1}]}', INVALID),
        ('{"type":"set_negative_prompt","text":"a\\nb"}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_transition"}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_transition","seconds":1,"bars":1}', ErrorCode.INVALID_VALUE),
        ('{"type":"set_transition","bars":-0.5}', ErrorCode.INVALID_VALUE),
        ('{"type":"skip","id":{"a":1}}', ErrorCode.INVALID_VALUE),
        ('{"type":"skip","id":9007199254740993}', ErrorCode.INVALID_VALUE),
        ('{"type":"auth","token":""}', ErrorCode.INVALID_VALUE),
    ],
)
def test_malformed_control_messages_get_a_typed_error(text: str, code: ErrorCode) -> None:
    with pytest.raises(ControlError) as error:
        parse_client_message(text, CONFIG)
    assert error.value.code == code
    assert error.value.message


def test_prompt_length_and_count_limits_come_from_the_config() -> None:
    config = ServerConfig(max_prompt_chars=10, max_prompts=2)
    ok = {"type": "set_prompts", "prompts": [{"text": "x" * 10, "weight": 1}] * 2}
    assert len(parse_client_message(json.dumps(ok), config).body.prompts) == 2
    for too_much in (
        {"type": "set_prompts", "prompts": [{"text": "x" * 11, "weight": 1}]},
        {"type": "set_prompts", "prompts": [{"text": "x", "weight": 1}] * 3},
        {"type": "set_negative_prompt", "text": "x" * 11},
    ):
        with pytest.raises(ControlError) as error:
            parse_client_message(json.dumps(too_much), config)
        assert error.value.code == ErrorCode.TOO_LARGE


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_any_text_is_parsed_or_refused_with_a_control_error(text: str) -> None:
    try:
        parse_client_message(text, CONFIG)
    except ControlError as error:
        assert isinstance(error.code, ErrorCode)


@settings(max_examples=300)
@given(
    st.sampled_from(["set_prompts", "set_seed", "set_guidance", "set_transition", "auth", "x"]),
    st.dictionaries(
        st.sampled_from(["prompts", "seed", "guidance", "seconds", "bars", "token", "id", "z"]),
        json_values,
    ),
)
def test_any_json_object_is_parsed_or_refused_with_a_control_error(
    message_type: str, fields: dict
) -> None:
    text = json.dumps({**fields, "type": message_type})
    try:
        request = parse_client_message(text, CONFIG)
    except ControlError as error:
        assert isinstance(error.code, ErrorCode)
        # The reply to any refusal is valid JSON a browser can parse.
        json.loads(error_text(error.code, error.message, of=error.of, request_id=error.request_id))
    else:
        assert request.type == message_type


#: Any character but control characters and surrogates.
PROMPT_CHARACTERS = st.characters(exclude_categories=("Cc", "Cs"))


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.text(PROMPT_CHARACTERS, min_size=1, max_size=40).filter(str.strip),
            st.floats(0.0, 100.0),
        ),
        min_size=1,
        max_size=8,
    ).filter(lambda prompts: sum(weight for _, weight in prompts) > 0)
)
def test_valid_prompt_mixes_arrive_unchanged(prompts: list[tuple[str, float]]) -> None:
    items = [{"text": text, "weight": weight} for text, weight in prompts]
    message = {"type": "set_prompts", "prompts": items}
    assert parse(message) == SetPrompts(tuple(Prompt(text, weight) for text, weight in prompts))


# ---- sessions: auth and message rate -----------------------------------------------------------


def test_control_needs_the_performer_token_and_a_wrong_one_changes_nothing() -> None:
    session = ControlSession(CONFIG, PERFORMER_TOKEN)
    assert session.role is Role.LISTENER and session.listening

    refused = session.receive('{"type":"skip","id":1}', now=0.0)
    assert isinstance(refused, Reply)
    assert json.loads(refused.text)["code"] == "unauthorized"

    wrong = session.receive('{"type":"auth","token":"performer-secret-tokem"}', now=0.0)
    assert json.loads(wrong.text)["code"] == "unauthorized"
    assert session.role is Role.LISTENER

    accepted = session.receive(json.dumps({"type": "auth", "token": PERFORMER_TOKEN}), now=0.0)
    assert json.loads(accepted.text) == {
        "type": "ack",
        "of": "auth",
        "details": {"role": "performer"},
    }
    assert session.receive('{"type":"skip","id":2}', now=0.0) == Apply(Skip(), "skip", 2)


def test_private_listening_starts_only_after_a_listen_or_performer_token() -> None:
    config = ServerConfig(listen_token="listen-token-123")
    listener = ControlSession(config, PERFORMER_TOKEN)
    assert not listener.listening
    admitted = listener.receive('{"type":"auth","token":"listen-token-123"}', now=0.0)
    assert isinstance(admitted, StartListening)
    assert listener.role is Role.LISTENER
    assert json.loads(listener.receive('{"type":"pause"}', now=0.0).text)["code"] == "unauthorized"
    # Presenting the performer token later upgrades the role; listening already runs.
    upgrade = listener.receive(json.dumps({"type": "auth", "token": PERFORMER_TOKEN}), now=0.0)
    assert isinstance(upgrade, Reply) and listener.role is Role.PERFORMER

    performer = ControlSession(config, PERFORMER_TOKEN)
    performer_auth = json.dumps({"type": "auth", "token": PERFORMER_TOKEN})
    assert isinstance(performer.receive(performer_auth, now=0.0), StartListening)


def test_a_token_with_non_ascii_characters_is_compared_not_crashed_on() -> None:
    session = ControlSession(CONFIG, "jeton-secret-été")
    refused = session.receive('{"type":"auth","token":"jeton-secret-ete"}', now=0.0)
    assert json.loads(refused.text)["code"] == "unauthorized"
    accepted = session.receive('{"type":"auth","token":"jeton-secret-été"}', now=0.0)
    assert json.loads(accepted.text)["type"] == "ack"
    assert session.role is Role.PERFORMER


def test_binary_and_oversized_messages_get_errors() -> None:
    session = ControlSession(ServerConfig(max_message_bytes=100), PERFORMER_TOKEN)
    assert json.loads(session.receive(b"\x00\x01", now=0.0).text)["code"] == "bad_message"
    long_prompt = json.dumps({"type": "set_negative_prompt", "text": "é" * 60})
    oversized = session.receive(long_prompt, now=0.0)
    assert json.loads(oversized.text)["code"] == "too_large"  # 60 characters, 120 bytes


def test_message_rate_accepts_the_budget_then_refuses_then_disconnects_a_flood() -> None:
    rate = MessageRate(per_second=5)
    verdicts = [rate.admit(now=0.0) for _ in range(11)]
    assert verdicts == [Admission.ACCEPT] * 5 + [Admission.REJECT] * 5 + [Admission.DISCONNECT]
    refilled = MessageRate(per_second=5)
    for _ in range(5):
        refilled.admit(now=0.0)
    assert refilled.admit(now=0.2) is Admission.ACCEPT  # one message's worth refilled


def test_a_steady_client_within_the_rate_is_never_refused() -> None:
    rate = MessageRate(per_second=30)
    assert all(rate.admit(now=i / 30) is Admission.ACCEPT for i in range(300))


def test_session_reports_rate_limit_then_disconnect() -> None:
    session = ControlSession(ServerConfig(max_messages_per_second=2), PERFORMER_TOKEN)
    outcomes = [session.receive('{"type":"resume"}', now=0.0) for _ in range(5)]
    codes = [json.loads(outcome.text)["code"] for outcome in outcomes[:4]]
    assert codes == ["unauthorized"] * 2 + ["rate_limited"] * 2
    assert isinstance(outcomes[4], Disconnect) and outcomes[4].code == 1008


# ---- pacing of slow listeners -------------------------------------------------------------------


def test_a_listener_over_its_queue_limit_is_skipped_until_drained_then_resumes() -> None:
    pacing = ListenerPacing(drop_after_seconds=10.0)
    limit = 1000
    assert pacing.decide(queued_bytes=1000, limit_bytes=limit, now=0.0) is Verdict.SEND
    assert pacing.decide(queued_bytes=1001, limit_bytes=limit, now=0.1) is Verdict.SKIP
    # Partly drained is not enough: resuming now would only add holes.
    assert pacing.decide(queued_bytes=10, limit_bytes=limit, now=0.2) is Verdict.SKIP
    assert pacing.decide(queued_bytes=0, limit_bytes=limit, now=0.3) is Verdict.RESUME
    assert pacing.decide(queued_bytes=500, limit_bytes=limit, now=0.4) is Verdict.SEND
    assert (pacing.skipped_messages, pacing.lag_episodes) == (2, 1)


def test_a_listener_that_never_drains_is_dropped() -> None:
    pacing = ListenerPacing(drop_after_seconds=2.0)
    assert pacing.decide(5000, 1000, now=10.0) is Verdict.SKIP
    assert pacing.decide(5000, 1000, now=11.9) is Verdict.SKIP
    assert pacing.decide(5000, 1000, now=12.0) is Verdict.DROP


# ---- packing clock blocks into messages --------------------------------------------------------


def block(sequence: int, position: int, frames: int = 882, rate: int = 44100) -> EncodedBlock:
    return EncodedBlock(sequence, position, rate, 1, frames, bytes([sequence % 256]) * 2 * frames)


def test_five_20ms_blocks_make_one_100ms_message_in_order() -> None:
    packer = AudioPacker(message_seconds=0.1, sample_format="s16")
    messages = [message for i in range(15) for message in packer.add(block(i, i * 882))]
    assert [(m.sequence, m.sample_position, m.num_frames) for m in messages] == [
        (0, 0, 4410),
        (1, 4410, 4410),
        (2, 8820, 4410),
    ]
    assert messages[1].payload == b"".join(bytes([i]) * 1764 for i in range(5, 10))


def test_a_gap_in_the_clock_flushes_so_no_message_spans_it() -> None:
    packer = AudioPacker(message_seconds=0.1, sample_format="s16")
    messages = []
    for sequence in [0, 1, 5, 6, 7, 8, 9]:
        messages += packer.add(block(sequence, sequence * 882))
    layout = [(m.sequence, m.sample_position, m.num_frames) for m in messages]
    assert layout == [(0, 0, 1764), (1, 4410, 4410)]


def test_a_new_sample_rate_starts_a_new_message() -> None:
    packer = AudioPacker(message_seconds=0.1, sample_format="s16")
    assert packer.add(block(0, 0)) == []
    flushed = packer.add(block(1, 882, frames=960, rate=48000))
    assert [(m.sample_rate, m.num_frames) for m in flushed] == [(44100, 882)]


# ---- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "problem"),
    [
        ({"port": 70000}, "port"),
        ({"max_connections": 0}, "max_connections"),
        ({"message_seconds": math.nan}, "message_seconds"),
        ({"burst_seconds": 3.0, "send_queue_seconds": 3.0}, "send_queue_seconds"),
        ({"sample_format": "u8"}, "sample_format"),
        ({"performer_token": "short"}, "performer_token"),
    ],
)
def test_bad_settings_are_refused_with_what_to_change(settings_: dict, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        ServerConfig(**settings_)
