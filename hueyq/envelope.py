"""The message envelope: what hueyq writes into a backend for every message.

An envelope is ``b"HQ1"``, one flag byte, a two-byte header length, a small
JSON header (task id, task name, eta, enqueue time, limits the supervisor
needs), then the body: huey's pickled message, optionally zlib-compressed and
Fernet-encrypted. With a secret the whole envelope is signed with huey's
``SignedSerializer`` scheme (HMAC appended after a ``b":"``).

Decoding checks in the safe order: size first, then the signature, then the
header's shape, and only then decrypts (refusing a plaintext body when
encryption is configured), decompresses (capped at the size limit, so a zip
bomb cannot grow a worker) and unpickles. Only workers unpickle in full;
read paths call :meth:`EnvelopeSerializer.preview`, which builds plain data
only. Backends read the header without decoding the body
(:func:`peek_header`, which never raises), so they can index, list and
dead-letter messages they cannot decode; a message the producer of this
process wrote (an :class:`Envelope`) hands them its header as written.
"""

import calendar
import datetime
import json
import json.encoder
import math
import pickle
import struct
import zlib
from typing import Any, Callable

from huey.registry import Message
from huey.serializer import Serializer, SignedSerializer

from hueyq.exceptions import (BadSignature, ConfigurationError, HueyqError,
                              PayloadTooLarge, Undecodable)
from hueyq.units import format_size

MAGIC = b"HQ1"
FLAG_COMPRESSED = 1
FLAG_SIGNED = 2
FLAG_ENCRYPTED = 4
_PREFIX = struct.Struct(">3sBH")
#: Room for the header and signature beyond the body's size limit.
_OVERHEAD = 64 * 1024
#: Header keys that must be strings, and those that must be numbers.
_HEADER_STRINGS = ("id", "name", "args")
_HEADER_NUMBERS = ("eta", "t", "time_limit", "priority")
#: Levels a header value may nest.
_MAX_HEADER_DEPTH = 4


class Envelope(bytes):
    """A message as this process's producer wrote it, carrying the header
    it wrote into it (``header``), so that the backend storing it need not
    read the header back out of the bytes (:func:`header_of`). Anything
    read from a backend or a socket is plain bytes and is read."""

    header: dict


def header_of(data: Any) -> "dict | None":
    """The header of a message about to be stored: the one its producer
    wrote (an :class:`Envelope`), else :func:`peek_header`'s."""
    header = getattr(data, "header", None)
    return header if isinstance(data, Envelope) and \
        isinstance(header, dict) else peek_header(data)


def json_writer() -> "Callable[[Any], str]":
    """A function that writes compact JSON as ``json.dumps`` does, for the
    small flat documents written with every message (its header, the
    backend's meta), without building a new encoder for every call (which
    json.dumps and JSONEncoder.encode do, at about half their cost)."""
    encoder = json.JSONEncoder(separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - an interpreter without _json
        return encoder.encode
    # markers=None: no check for cycles, which flat documents cannot have.
    iterencode = make(None, encoder.default,
                      json.encoder.encode_basestring_ascii, None, ":", ",",
                      False, False, True)
    return lambda value: "".join(iterencode(value, 0))


#: Writes headers and meta (see json_writer).
write_json = json_writer()


def epoch(value: "datetime.datetime | None") -> "float | None":
    """Seconds since the epoch of huey's naive-UTC datetimes."""
    if value is None:
        return None
    if value.tzinfo is not None:
        return value.timestamp()
    return calendar.timegm(value.utctimetuple()) + value.microsecond / 1e6


def peek_header(data: Any) -> "dict | None":
    """The envelope header without verifying or decoding anything, or None
    when ``data`` is not an envelope or its header is malformed.

    Never raises, whatever ``data`` is. Only for indexing and display: a
    forged header is caught when the body is decoded and its signature
    checked.
    """
    try:
        return _header(data)[0]
    except Undecodable:
        return None


def _header(data: Any) -> "tuple[dict, int]":
    """(header, offset of the body); Undecodable for anything else.

    A header is a JSON object; ``id``, ``name`` and ``args`` are strings,
    ``eta``, ``t``, ``time_limit`` and ``priority`` finite numbers,
    ``memory`` a count of bytes, all optional; no value nests deeper than
    :data:`_MAX_HEADER_DEPTH`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Undecodable("not a hueyq message envelope (%s)"
                          % type(data).__name__)
    data = bytes(data[:_PREFIX.size + 65535])
    if len(data) < _PREFIX.size or data[:3] != MAGIC:
        raise Undecodable("not a hueyq message envelope")
    _, _, size = _PREFIX.unpack_from(data)
    if _PREFIX.size + size > len(data):
        raise Undecodable("truncated envelope header (%d bytes announced, %d "
                          "there)" % (size, len(data) - _PREFIX.size))
    try:
        header = json.loads(data[_PREFIX.size:_PREFIX.size + size],
                            parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Undecodable("malformed envelope header") from None
    problem = _header_problem(header)
    if problem:
        raise Undecodable("malformed envelope header: %s" % problem)
    return header, _PREFIX.size + size


def _no_constant(name: str) -> None:
    raise ValueError("%s is not a number" % name)


def _header_problem(header: Any) -> "str | None":
    if not isinstance(header, dict):
        return "not an object"
    for key in _HEADER_STRINGS:
        if header.get(key) is not None and not isinstance(header[key], str):
            return "%s is not a string" % key
    for key in _HEADER_NUMBERS:
        value = header.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, float)) or not math.isfinite(value)):
            return "%s is not a number" % key
    memory = header.get("memory")
    if memory is not None and (isinstance(memory, bool) or not isinstance(
            memory, int) or memory < 0):
        return "memory is not a size"
    pending = [(v, 1) for v in header.values()]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth >= _MAX_HEADER_DEPTH:
                return "nested too deep"
            items = value.values() if isinstance(value, dict) else value
            pending.extend((v, depth + 1) for v in items)
    return None


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
        raw_header = write_json(header).encode()
        out = _PREFIX.pack(MAGIC, flags, len(raw_header)) + raw_header + body
        return self._signer._sign(out) if self._signer is not None else out

    @property
    def max_wire_size(self) -> int:
        """The most bytes a message may take in a backend: the size limit
        plus room for the header and signature."""
        return self.max_size + _OVERHEAD

    def deserialize(self, data: bytes) -> Any:
        """Verify and decode a message or result. Raises only
        PayloadTooLarge, BadSignature and Undecodable."""
        try:
            return pickle.loads(self._body(data))
        except HueyqError:
            raise
        except Exception as exc:
            raise Undecodable("cannot unpickle message: %s: %s"
                              % (type(exc).__name__, exc)) from None

    def preview(self, data: bytes, inner: Any = None) -> Any:
        """What a read path may show of a stored value: verified like
        :meth:`deserialize`, then built as plain data only
        (:mod:`hueyq.preview`), never a full unpickle. ``inner`` is a
        serializer set on an App's huey, whose bytes the envelope carries:
        huey's own format (a pickle, maybe gzip or zlib) is read the same
        way; any other stays bytes."""
        from hueyq.preview import plain, plain_loads
        try:
            value = plain_loads(self._body(data))
            if isinstance(value, bytes) and type(inner) is Serializer:
                if inner.comp:
                    value = self._decompress(value, 15 if inner.use_zlib
                                             else 31)
                value = plain_loads(value)
            return plain(value)
        except HueyqError:
            raise
        except Exception as exc:
            raise Undecodable("cannot read value: %s: %s"
                              % (type(exc).__name__, exc)) from None

    def _body(self, data: bytes) -> bytes:
        body, flags = self.open(data)
        if self._fernet is not None and not flags & FLAG_ENCRYPTED:
            raise Undecodable("message is not encrypted but encryption is "
                              "configured (security.encryption_keys)")
        if flags & FLAG_ENCRYPTED:
            body = self._decrypt(body)
        if flags & FLAG_COMPRESSED:
            body = self._decompress(body)
        return body

    def open(self, data: bytes) -> "tuple[bytes, int]":
        """Check size, magic, signature and header; return the still-encoded
        body and the flags."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise Undecodable("not a hueyq message envelope (%s)"
                              % type(data).__name__)
        if len(data) > self.max_wire_size:
            raise PayloadTooLarge("message is %s; the limit is %s"
                                  % (format_size(len(data)),
                                     format_size(self.max_size)))
        data = bytes(data)
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
        _, offset = _header(data)
        return data[offset:], flags

    def _decompress(self, body: bytes, wbits: int = 15) -> bytes:
        inflater = zlib.decompressobj(wbits)
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
