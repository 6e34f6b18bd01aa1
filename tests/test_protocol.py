"""The wire codec: round trips, and nothing but RemoteProtocolError for bad input."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylocker import protocol as p
from pylocker.errors import LocalProtocolError, RemoteProtocolError

ids = st.integers(0, p.MAX_ID)
texts = st.text(max_size=40)
names = st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5)
seconds = st.none() | st.floats(0, 1000, allow_nan=False) | st.integers(0, 1000)

messages = st.one_of(
    st.builds(p.Hello, ids, texts, texts, ids),
    st.builds(p.Acquire, ids, names, seconds),
    st.builds(p.Release, ids, texts),
    st.builds(p.Cancel, ids),
    st.builds(p.Heartbeat, ids),
    st.builds(p.Bye, ids),
    st.builds(p.Welcome, ids, texts, texts, seconds, seconds, ids),
    st.builds(p.Grant, ids, texts, ids),
    st.builds(p.Timeout, ids),
    st.builds(p.Released, ids, st.integers(0, 255)),
    st.builds(p.Expire, ids, texts, texts),
    st.builds(p.Error, ids, st.integers(0, 255), texts),
    st.builds(p.Pong, ids),
    st.builds(p.Publish, ids, st.none() | st.lists(texts, max_size=3), st.integers(1, 100), st.binary(max_size=50),
              st.booleans()),
    st.builds(p.Credit, ids, st.integers(1, 100)),
    st.builds(p.PubAck, ids, st.integers(1, 100)),
    st.builds(p.Deliver, ids, texts, texts, ids, st.integers(1, 100), st.binary(max_size=50)),
)


@given(messages)
def test_every_message_survives_a_round_trip(message: p.Message) -> None:
    assert p.decode(p.encode(message)) == message


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_remote_protocol_errors(data: bytes) -> None:
    try:
        p.decode(data)
    except RemoteProtocolError:
        pass


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.lists(msgpack_values, max_size=8), st.integers(-3, 80))
def test_random_msgpack_frames_only_raise_remote_protocol_errors(fields: list, kind: int) -> None:
    frame = msgpack.packb([p.VERSION, kind, *fields])
    try:
        message = p.decode(frame)
    except RemoteProtocolError:
        return
    assert p.decode(p.encode(message)) == message  # whatever passed the checks is a well-formed message


@settings(max_examples=300)
@given(st.lists(msgpack_values | st.lists(st.text(max_size=3), max_size=3), max_size=4), st.sampled_from([2, 3, 65]))
def test_the_fast_paths_accept_exactly_what_the_schemas_accept(fields: list, kind: int) -> None:
    # Acquire, Release and Grant skip the generic loop: their inlined checks must be the schema's.
    cls, checks = p._SCHEMAS[kind]
    valid = len(fields) == len(checks) and all(check(value) for check, value in zip(checks, fields))
    frame = msgpack.packb([p.VERSION, kind, *fields])
    if valid:
        assert p.decode(frame) == cls(*fields)
    else:
        with pytest.raises(RemoteProtocolError):
            p.decode(frame)


@pytest.mark.parametrize("frame", [
    [1, 2, 1, ["a"], 1.0],                 # wrong version
    [2, 2, -1, ["a"], 1.0],                # negative request id
    [2, 2, 1, [], 1.0],                    # no names
    [2, 2, 1, ["a"] * (p.MAX_NAMES + 1), 1.0],
    [2, 2, 1, ["x" * (p.MAX_NAME_LEN + 1)], 1.0],
    [2, 2, 1, [""], 1.0],
    [2, 2, 1, ["a"], float("nan")],
    [2, 2, 1, ["a"], -1],
    [2, 2, 1, ["a"], True],
    [2, 2, 1, ["a"]],                      # missing field
    [2, 2, 1, ["a", 7], 1.0],              # a name that is not text
    [2, 3, 1, 5],                          # a lock id that is not text
    [2, 3, True, "lock"],                  # a request id that is a bool
    [2, 65, 1, "lock", -1],                # a negative token
    [2, [2], 1, ["a"], 1.0],               # an unhashable type
    [2, 99, 1],                            # unknown type
    {"v": 1},
])
def test_malformed_frames_are_refused(frame: object) -> None:
    with pytest.raises(RemoteProtocolError):
        p.decode(msgpack.packb(frame))


def test_oversized_frames_are_refused_before_parsing() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        p.decode(b"\x91" + b"\x00" * p.MAX_FRAME)


def test_only_wire_messages_encode() -> None:
    with pytest.raises(LocalProtocolError):
        p.encode(("not", "a", "message"))  # type: ignore[arg-type]
