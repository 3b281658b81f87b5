"""The message envelope: signing, size limits, safe decompression, keys."""

import json
import pickle
import zlib

import pytest
from huey.registry import Message

from hueyq.envelope import EnvelopeSerializer, peek_header
from hueyq.exceptions import BadSignature, PayloadTooLarge, Undecodable


def message(**kw):
    return Message("job-1", "tasks.echo", None, 0, 0, None, (kw.get("arg", 1),),
                   {}, None, None, None, None, None, None, None)


def test_round_trip_and_header_is_readable_without_decoding():
    ser = EnvelopeSerializer()
    data = ser.serialize(message())
    assert peek_header(data) == {"id": "job-1", "name": "tasks.echo", "eta": None}
    assert ser.deserialize(data) == message()


def test_signed_messages_verify_and_reject_tampering():
    ser = EnvelopeSerializer(secret="s3cret")
    data = ser.serialize(message())
    assert ser.deserialize(data) == message()
    tampered = data.replace(b"tasks.echo", b"tasks.evil")
    with pytest.raises(BadSignature, match="does not match"):
        ser.deserialize(tampered)
    with pytest.raises(BadSignature, match="not signed"):
        ser.deserialize(EnvelopeSerializer().serialize(message()))
    with pytest.raises(BadSignature, match="no secret"):
        EnvelopeSerializer().deserialize(data)
    with pytest.raises(BadSignature):
        EnvelopeSerializer(secret="other").deserialize(data)


def test_forged_pickle_is_never_unpickled_with_a_secret(tmp_path):
    canary = tmp_path / "canary"

    class Evil:
        def __reduce__(self):
            return (open, (str(canary), "w"))
    forged = pickle.dumps(Evil())
    ser = EnvelopeSerializer(secret="s3cret")
    for data in (forged, b"HQ1\x00\x00\x02{}" + forged,
                 b"HQ1\x02\x00\x02{}" + forged + b":" + b"0" * 40):
        with pytest.raises((BadSignature, Undecodable)):
            ser.deserialize(data)
    assert not canary.exists()


def test_size_limit_at_enqueue_and_before_decoding():
    ser = EnvelopeSerializer(max_size=1024)
    with pytest.raises(PayloadTooLarge, match="limit is 1.0 KiB"):
        ser.serialize(message(arg="x" * 5000))
    big = EnvelopeSerializer(max_size=10 << 20).serialize(message(arg="x" * 200_000))
    with pytest.raises(PayloadTooLarge):
        ser.deserialize(big)


def test_decompression_is_capped():
    ser = EnvelopeSerializer(compression=True, max_size=1 << 20)
    data = ser.serialize(message(arg="y" * 100_000))
    assert len(data) < 10_000
    assert ser.deserialize(data).args == ("y" * 100_000,)
    bomb_body = zlib.compress(b"\0" * (200 << 20), 9)
    bomb = b"HQ1\x01\x00\x02{}" + bomb_body
    assert len(bomb) < 300_000
    with pytest.raises(PayloadTooLarge, match="inflates"):
        ser.deserialize(bomb)


def test_garbage_is_undecodable():
    ser = EnvelopeSerializer()
    for data in (b"", b"hello", b"HQ1\x00\x00\x02{}not a pickle"):
        with pytest.raises(Undecodable):
            ser.deserialize(data)
    assert peek_header(b"garbage") is None


def test_encryption_with_key_rotation():
    fernet = pytest.importorskip("cryptography.fernet")
    old, new = fernet.Fernet.generate_key().decode(), fernet.Fernet.generate_key().decode()
    before = EnvelopeSerializer(secret="s", encryption_keys=(old,))
    data = before.serialize(message(arg="private"))
    assert b"private" not in data
    rotated = EnvelopeSerializer(secret="s", encryption_keys=(new, old))
    assert rotated.deserialize(data).args == ("private",)
    with pytest.raises(Undecodable, match="decrypt"):
        EnvelopeSerializer(secret="s", encryption_keys=(new,)).deserialize(data)


# ---------------------------------------------------------------- hostile input

from hypothesis import HealthCheck, given, settings, strategies as st

from hueyq.backends import PENDING, SCHEDULED, message_fields
from hueyq.envelope import MAGIC

DOCUMENTED = (BadSignature, PayloadTooLarge, Undecodable)
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def envelope(flags, size, header, body):
    return MAGIC + bytes([flags]) + size.to_bytes(2, "big") + header + body


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=5), inner, max_size=3), max_leaves=8)
_headers = st.one_of(
    st.binary(max_size=64),
    st.dictionaries(st.sampled_from(["id", "name", "eta", "t", "memory",
                                     "time_limit", "priority", "args", "x"]),
                    _json_values, max_size=5).map(
                        lambda d: json.dumps(d).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n))
_bodies = st.one_of(
    st.binary(max_size=128),
    _json_values.map(lambda v: pickle.dumps(v)),
    _json_values.map(lambda v: zlib.compress(pickle.dumps(v))))
_envelopes = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda f, h, b, cut: envelope(f, len(h) + cut, h, b),
              st.integers(0, 255), _headers, _bodies, st.integers(-3, 3)
              .filter(lambda c: c >= 0)),
    st.builds(envelope, st.integers(0, 255), st.integers(0, 65535), _headers,
              _bodies))


@FUZZ
@given(_envelopes)
def test_fuzz_peek_header_never_raises(data):
    header = peek_header(data)
    assert header is None or isinstance(header, dict)
    if header is not None:
        assert all(isinstance(header.get(k), (str, type(None)))
                   for k in ("id", "name", "args"))
        for key in ("eta", "t", "time_limit", "priority"):
            value = header.get(key)
            assert value is None or (isinstance(value, (int, float))
                                     and not isinstance(value, bool))


@FUZZ
@given(_envelopes, st.sampled_from([None, "s3cret"]), st.booleans())
def test_fuzz_deserialize_raises_only_the_documented_errors(data, secret,
                                                            compression):
    ser = EnvelopeSerializer(secret=secret, compression=compression,
                             max_size=4096)
    try:
        ser.deserialize(data)
    except DOCUMENTED:
        pass
    try:
        ser.preview(data)
    except DOCUMENTED:
        pass


@FUZZ
@given(_envelopes, st.floats(0, 2e9))
def test_fuzz_message_fields_never_raises(data, now):
    header, meta, state, eta = message_fields(data, now)
    assert isinstance(header, dict) and isinstance(meta, dict)
    assert state in (PENDING, SCHEDULED)
    assert eta is None or isinstance(eta, (int, float))
    json.dumps(meta)


def test_malformed_headers_are_undecodable_never_a_crash():
    ser = EnvelopeSerializer()
    body = pickle.dumps(message())
    deep = b"[" * 60_000
    cases = {
        "deep nesting": envelope(0, len(deep), deep, body),
        "eta not a number": envelope(0, 16, b'{"eta":"sooner"}', body),
        "eta not finite": envelope(0, 13, b'{"eta":NaN}  ', body),
        "length past the end": envelope(0, 65535, b"{}", body),
        "not an object": envelope(0, 2, b"[]", body),
        "id not a string": envelope(0, 8, b'{"id":1}', body),
    }
    for name, data in cases.items():
        assert peek_header(data) is None, name
        with pytest.raises(Undecodable, match="header"):
            ser.deserialize(data)
        header, meta, state, eta = message_fields(data, 0)
        assert (header, meta, state, eta) == ({}, {}, PENDING, None), name
    assert peek_header(None) is None and peek_header(5) is None
    with pytest.raises(Undecodable):
        ser.deserialize(10 ** 9)  # bytes(int) would allocate a gigabyte


def test_encryption_refuses_a_plaintext_envelope():
    fernet = pytest.importorskip("cryptography.fernet")
    key = fernet.Fernet.generate_key().decode()
    plaintext = EnvelopeSerializer().serialize(message())
    with pytest.raises(Undecodable, match="not encrypted"):
        EnvelopeSerializer(encryption_keys=(key,)).deserialize(plaintext)
    signed_plain = EnvelopeSerializer(secret="s").serialize(message())
    with pytest.raises(Undecodable, match="not encrypted"):
        EnvelopeSerializer(secret="s", encryption_keys=(key,)).deserialize(
            signed_plain)


def test_preview_builds_plain_data_and_never_runs_a_pickle(tmp_path):
    import datetime
    import fractions
    canary = tmp_path / "canary"

    class Evil:
        def __reduce__(self):
            return (open, (str(canary), "w"))
    ser = EnvelopeSerializer()
    value = {"n": 1, "f": float("nan"), "inf": float("-inf"), "when":
             datetime.datetime(2026, 1, 2, 3, 4, 5), "set": {3},
             "frac": fractions.Fraction(1, 3), "evil": Evil(),
             "nested": [[[["deep"]]]], "bytes": b"\x00\x01"}
    shown = ser.preview(ser.serialize(value))
    assert not canary.exists()
    assert shown["n"] == 1 and shown["f"] == "NaN" and shown["inf"] == "-Infinity"
    assert shown["when"] == "2026-01-02T03:04:05" and shown["set"] == [3]
    assert shown["frac"] == "<fractions.Fraction>"
    assert shown["evil"] == "<io.open>"
    assert shown["nested"] == [[[["deep"]]]] and shown["bytes"] == "b'\\x00\\x01'"
    json.dumps(shown, allow_nan=False)
    # 100,000 nested lists (a pickle pickle.dumps could not even write).
    deep = envelope(0, 2, b"{}", b"\x80\x04" + b"]" * 100_000
                    + b"a" * 99_999 + b".")
    assert json.dumps(ser.preview(deep), allow_nan=False).count("[") == 32
    with pytest.raises(BadSignature):
        EnvelopeSerializer(secret="s").preview(ser.serialize(value))
