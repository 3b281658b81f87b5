"""The message envelope: signing, size limits, safe decompression, keys."""

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
