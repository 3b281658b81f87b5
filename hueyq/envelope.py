"""The message envelope: what hueyq writes into a backend for every message.

An envelope is ``b"HQ1"``, one flag byte, a two-byte header length, a small
JSON header (task id, task name, eta, enqueue time, limits the supervisor
needs), then the body: huey's pickled message, optionally zlib-compressed and
Fernet-encrypted. With a secret the whole envelope is signed with huey's
``SignedSerializer`` scheme (HMAC appended after a ``b":"``).

Decoding checks in the safe order: size first, then the signature, and only
then decrypts, decompresses (capped at the size limit, so a zip bomb cannot
grow a worker) and unpickles. Backends read the header without decoding the
body, so they can index, list and dead-letter messages they cannot decode.
"""

import calendar
import datetime
import json
import pickle
import struct
import zlib
from typing import Any

from huey.registry import Message
from huey.serializer import Serializer, SignedSerializer

from hueyq.exceptions import (BadSignature, ConfigurationError,
                              PayloadTooLarge, Undecodable)
from hueyq.units import format_size

MAGIC = b"HQ1"
FLAG_COMPRESSED = 1
FLAG_SIGNED = 2
FLAG_ENCRYPTED = 4
_PREFIX = struct.Struct(">3sBH")
#: Room for the header and signature beyond the body's size limit.
_OVERHEAD = 64 * 1024


def epoch(value: "datetime.datetime | None") -> "float | None":
    """Seconds since the epoch of huey's naive-UTC datetimes."""
    if value is None:
        return None
    if value.tzinfo is not None:
        return value.timestamp()
    return calendar.timegm(value.utctimetuple()) + value.microsecond / 1e6


def peek_header(data: bytes) -> "dict | None":
    """The envelope header without verifying or decoding anything, or None.

    Only for indexing and display: a forged header is caught when the body
    is decoded and its signature checked.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    data = bytes(data[:_PREFIX.size + 65535])
    if len(data) < _PREFIX.size or data[:3] != MAGIC:
        return None
    _, _, size = _PREFIX.unpack_from(data)
    try:
        header = json.loads(data[_PREFIX.size:_PREFIX.size + size])
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


class EnvelopeSerializer(Serializer):
    """huey's serializer interface, writing and reading hueyq envelopes."""

    def __init__(self, secret: "str | None" = None, max_size: int = 1 << 20,
                 compression: bool = False, encryption_keys: "tuple" = (),
                 salt: str = "hueyq") -> None:
        super().__init__(compression=False)
        self.max_size = max_size
        self.compress = compression
        self._signer = SignedSerializer(secret, salt=salt) if secret else None
        self._fernet = _fernet(encryption_keys) if encryption_keys else None

    @property
    def signed(self) -> bool:
        """Whether messages are signed (a secret is configured)."""
        return self._signer is not None

    def serialize(self, data: Any) -> bytes:
        header = {}
        if isinstance(data, Message):
            header = {"id": data.id, "name": data.name, "eta": epoch(data.eta)}
        return self.serialize_with_header(data, header)

    def serialize_with_header(self, data: Any, header: dict) -> bytes:
        """Pickle ``data`` into an envelope carrying ``header``."""
        body = pickle.dumps(data, self.pickle_protocol)
        if len(body) > self.max_size:
            raise PayloadTooLarge(
                "message%s is %s; the limit is %s (security.max_message_size)"
                % (" of task %s" % header["name"] if header.get("name") else "",
                   format_size(len(body)), format_size(self.max_size)))
        flags = 0
        if self.compress:
            body = zlib.compress(body, 6)
            flags |= FLAG_COMPRESSED
        if self._fernet is not None:
            body = self._fernet.encrypt(body)
            flags |= FLAG_ENCRYPTED
        if self._signer is not None:
            flags |= FLAG_SIGNED
        raw_header = json.dumps(header, separators=(",", ":")).encode()
        out = _PREFIX.pack(MAGIC, flags, len(raw_header)) + raw_header + body
        return self._signer._sign(out) if self._signer is not None else out

    def deserialize(self, data: bytes) -> Any:
        body, flags = self.open(data)
        if flags & FLAG_ENCRYPTED:
            body = self._decrypt(body)
        if flags & FLAG_COMPRESSED:
            body = self._decompress(body)
        try:
            return pickle.loads(body)
        except Exception as exc:
            raise Undecodable("cannot unpickle message: %s: %s"
                              % (type(exc).__name__, exc)) from None

    def open(self, data: bytes) -> "tuple[bytes, int]":
        """Check size, magic and signature; return the still-encoded body."""
        data = bytes(data)
        if len(data) > self.max_size + _OVERHEAD:
            raise PayloadTooLarge("message is %s; the limit is %s"
                                  % (format_size(len(data)),
                                     format_size(self.max_size)))
        if len(data) < _PREFIX.size or data[:3] != MAGIC:
            raise Undecodable("not a hueyq message envelope")
        flags = data[3]
        if self._signer is not None:
            if not flags & FLAG_SIGNED:
                raise BadSignature("message is not signed")
            try:
                data = self._signer._unsign(data)
            except ValueError:
                raise BadSignature("message signature does not match") from None
        elif flags & FLAG_SIGNED:
            raise BadSignature("message is signed but no secret is configured "
                               "(set HUEYQ_SECRET)")
        _, _, size = _PREFIX.unpack_from(data)
        return data[_PREFIX.size + size:], flags

    def _decompress(self, body: bytes) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(body, self.max_size + 1)
        except zlib.error as exc:
            raise Undecodable("corrupt compressed message: %s" % exc) from None
        if len(out) > self.max_size or inflater.unconsumed_tail:
            raise PayloadTooLarge("message inflates past %s"
                                  % format_size(self.max_size))
        return out

    def _decrypt(self, body: bytes) -> bytes:
        if self._fernet is None:
            raise Undecodable("message is encrypted but no encryption key is "
                              "configured (set HUEYQ_ENCRYPTION_KEY)")
        from cryptography.fernet import InvalidToken
        try:
            return self._fernet.decrypt(body)
        except InvalidToken:
            raise Undecodable("cannot decrypt message with the configured "
                              "keys") from None


def _fernet(keys: "tuple[str, ...]"):
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise ConfigurationError("security.encryption_keys needs the "
                                 "cryptography package: pip install "
                                 "'hueyq[crypto]'") from None
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        raise ConfigurationError("security.encryption_keys: each key must be "
                                 "a Fernet key (Fernet.generate_key())") from None
