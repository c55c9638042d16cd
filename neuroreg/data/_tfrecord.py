"""TFRecord files and ``tf.train.Example`` records without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

with ``masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32)``, ``c`` the
CRC-32C (Castagnoli) of ``x``. A ``tf.train.Example`` is the protobuf message
``Example{Features features = 1}``, ``Features{map<string, Feature> feature = 1}``,
``Feature{oneof: BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3}``,
each list holding ``repeated <type> value = 1`` (numbers packed or not).

Every check names the file, the record's index and its byte offset: a length
whose CRC fails, a record cut short by the end of the file, a data CRC that
fails, a payload that is not an Example.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from neuroreg.errors import DataFormatError

__all__ = ["crc32c", "masked_crc32c", "index_records", "read_record", "iter_records", "parse_example",
           "encode_example", "write_records", "FeatureValue"]

FeatureValue = list[bytes] | np.ndarray
_POLY = 0x82F63B78      # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8
_LANE = 32              # bytes per lane of the vectorised CRC
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


# ----------------------------------------------------------------------------- CRC-32C
@functools.cache
def _table() -> np.ndarray:
    table = np.zeros(256, np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ (_POLY if c & 1 else 0)
        table[n] = c
    return table


def _raw_loop(state: int, data: bytes) -> int:
    """The CRC register after ``data`` from ``state`` (no pre/post inversion), one byte at a time."""
    table = _table().tolist()
    for b in data:
        state = table[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


def _apply(columns: Sequence[int], v: int) -> int:
    out = 0
    for i in range(32):
        if v >> i & 1:
            out ^= columns[i]
    return out


@functools.cache
def _zeros_columns(log2_bytes: int) -> tuple[int, ...]:
    """The linear map ``state -> register after 2**log2_bytes zero bytes`` as its 32 column images."""
    if log2_bytes == 0:
        return tuple(_raw_loop(1 << i, b"\0") for i in range(32))
    half = _zeros_columns(log2_bytes - 1)
    return tuple(_apply(half, c) for c in half)


@functools.cache
def _zeros_tables(log2_bytes: int) -> np.ndarray:
    """(4, 256) uint32 byte tables of :func:`_zeros_columns`: the map of ``v`` is the XOR of
    ``tables[i][(v >> 8 i) & 0xFF]``."""
    cols = np.array(_zeros_columns(log2_bytes), np.uint32).reshape(4, 8)
    bits = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(bool)         # (256, 8)
    return np.stack([np.bitwise_xor.reduce(np.where(bits, cols[i], np.uint32(0)), axis=1) for i in range(4)])


def _shift(v: np.ndarray, log2_bytes: int) -> np.ndarray:
    t = _zeros_tables(log2_bytes)
    return t[0][v & 0xFF] ^ t[1][(v >> 8) & 0xFF] ^ t[2][(v >> 16) & 0xFF] ^ t[3][v >> 24]


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli, as iSCSI and TFRecord use) of ``data``: ``crc32c(b"123456789") == 0xE3069283``.

    Long inputs run vectorised: 32-byte lanes in parallel, combined pairwise
    with the CRC's linearity (the register after ``a || b`` is the register of
    ``a`` carried over ``len(b)`` zero bytes XOR the register of ``b``).
    """
    data = bytes(data)
    n = len(data)
    if n < 8 * _LANE:
        return _raw_loop(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    arr = np.frombuffer(data, np.uint8).copy()
    arr[:4] ^= 0xFF                 # the initial register 0xFFFFFFFF, folded into the first 4 bytes
    lanes = 1 << int(np.ceil(np.log2(-(-n // _LANE))))
    padded = np.zeros(lanes * _LANE, np.uint8)
    padded[lanes * _LANE - n:] = arr   # leading zeros leave a zero register unchanged
    block = padded.reshape(lanes, _LANE).astype(np.uint32)
    table = _table()
    state = np.zeros(lanes, np.uint32)
    for j in range(_LANE):
        state = table[(state ^ block[:, j]) & 0xFF] ^ (state >> 8)
    level = _LANE.bit_length() - 1  # log2 of the bytes each lane covers
    while len(state) > 1:
        state = _shift(state[0::2], level) ^ state[1::2]
        level += 1
    return int(state[0]) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC: ``((c >> 15) | (c << 17)) + 0xa282ead8`` modulo 2**32, ``c = crc32c(data)``."""
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- framing
def index_records(path: str | Path) -> list[tuple[int, int]]:
    """``(data offset, data length)`` in bytes of every record of the TFRecord file ``path``.

    Reads the 12-byte headers only (each length checked against its CRC, and the
    file's size against the records it frames); the data CRCs are checked by
    :func:`read_record`. A file of zero bytes holds no record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TFRecord file {str(path)!r} does not exist")
    size = path.stat().st_size
    out: list[tuple[int, int]] = []
    with path.open("rb") as f:
        pos = 0
        while pos < size:
            i = len(out)
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise DataFormatError(f"{path}: record {i} (byte offset {pos}): the file ends inside the record's "
                                      f"12-byte header ({len(header)} bytes left); the file is truncated")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise DataFormatError(f"{path}: record {i} (byte offset {pos}): the length field's CRC does not "
                                      f"match (stored 0x{length_crc:08x}, computed 0x{masked_crc32c(header[:8]):08x}); "
                                      "the file is corrupt or not a TFRecord file")
            end = pos + _HEADER.size + length + _FOOTER.size
            if end > size:
                raise DataFormatError(f"{path}: record {i} (byte offset {pos}) declares {length} bytes of data but "
                                      f"the file ends {end - size} bytes short; the file is truncated")
            out.append((pos + _HEADER.size, int(length)))
            pos = end
            f.seek(pos)
    return out


def read_record(path: str | Path, offset: int, length: int, index: int, *, check_crc: bool = True) -> bytes:
    """The data of record ``index`` (at byte ``offset``, ``length`` bytes, from :func:`index_records`).

    ``check_crc``: verify the data against its stored masked CRC-32C; a mismatch
    raises :class:`~neuroreg.errors.DataFormatError` naming the file and record.
    """
    with Path(path).open("rb") as f:
        f.seek(offset)
        blob = f.read(length + _FOOTER.size)
    if len(blob) != length + _FOOTER.size:
        raise DataFormatError(f"{path}: record {index} (byte offset {offset - _HEADER.size}): the file ends inside "
                              "the record; the file is truncated")
    data = blob[:length]
    if check_crc:
        (stored,) = _FOOTER.unpack(blob[length:])
        computed = masked_crc32c(data)
        if stored != computed:
            raise DataFormatError(f"{path}: record {index} (byte offset {offset - _HEADER.size}): the data CRC does "
                                  f"not match (stored 0x{stored:08x}, computed 0x{computed:08x}); the file is "
                                  "corrupt")
    return data


def iter_records(path: str | Path, *, check_crc: bool = True) -> Iterator[bytes]:
    """The records of a TFRecord file in order, each checked (see :func:`index_records`, :func:`read_record`)."""
    for i, (offset, length) in enumerate(index_records(path)):
        yield read_record(path, offset, length, i, check_crc=check_crc)


def write_records(path: str | Path, records: Iterable[bytes]) -> Path:
    """Write ``records`` as a TFRecord file (framed with their masked CRCs, as TensorFlow writes them)."""
    path = Path(path)
    with path.open("wb") as f:
        for data in records:
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data)))
    return path


# ----------------------------------------------------------------------------- protobuf
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("a varint runs past the end of the message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("a varint is longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of a protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"field {number} has wire type {wire} (groups are not used by tf.train.Example)")
        if pos > len(buf):
            raise ValueError(f"field {number} runs past the end of the message")
        yield number, wire, value


def _b(v: int | bytes) -> bytes:
    if not isinstance(v, bytes):
        raise ValueError("a field expected to be length-delimited holds a number")
    return v


def _i(v: int | bytes) -> int:
    if not isinstance(v, int):
        raise ValueError("a field expected to be a number is length-delimited")
    return v


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(buf: bytes) -> FeatureValue:
    kind, values = 0, b""
    for number, wire, value in _fields(buf):
        if number in (1, 2, 3) and wire == 2:
            kind, values = number, _b(value)
    if kind == 1:
        return [_b(v) for n, w, v in _fields(values) if n == 1 and w == 2]
    if kind == 2:
        floats: list[float] = []
        for n, w, v in _fields(values):
            if n == 1 and w == 2:
                floats.extend(np.frombuffer(_b(v), "<f4").tolist())
            elif n == 1 and w == 5:
                floats.append(float(np.frombuffer(_i(v).to_bytes(4, "little"), "<f4")[0]))
        return np.asarray(floats, np.float32)
    if kind == 3:
        ints: list[int] = []
        for n, w, v in _fields(values):
            if n == 1 and w == 2:
                pos, packed = 0, _b(v)
                while pos < len(packed):
                    x, pos = _varint(packed, pos)
                    ints.append(_signed64(x))
            elif n == 1 and w == 0:
                ints.append(_signed64(_i(v)))
        return np.asarray(ints, np.int64)
    return []


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """A serialised ``tf.train.Example`` as ``{name: value}``.

    Values: ``list[bytes]`` for a bytes_list, int64 array for an int64_list,
    float32 array for a float_list, ``[]`` for a feature with no list. Raises
    ``ValueError`` for bytes that are not a protobuf message of that shape
    (callers add the file and record).
    """
    out: dict[str, FeatureValue] = {}
    for number, wire, features in _fields(data):
        if number != 1 or wire != 2:
            continue
        for n, w, entry in _fields(_b(features)):
            if n != 1 or w != 2:
                continue
            key, value = None, b""
            for en, ew, ev in _fields(_b(entry)):
                if en == 1 and ew == 2:
                    key = _b(ev).decode("utf-8")
                elif en == 2 and ew == 2:
                    value = _b(ev)
            if key is None:
                raise ValueError("a feature map entry has no name")
            out[key] = _feature(value)
    return out


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _encode_varint(len(payload)) + payload


def encode_example(features: Mapping[str, bytes | Sequence[bytes] | Sequence[int] | np.ndarray]) -> bytes:
    """Serialise ``{name: value}`` as a ``tf.train.Example``: bytes (or a list of bytes) as a bytes_list,
    integers as a packed int64_list, floating arrays as a packed float_list."""
    entries = b""
    for name, value in features.items():
        if isinstance(value, (bytes, bytearray)):
            value = [bytes(value)]
        if isinstance(value, list) and value and all(isinstance(v, (bytes, bytearray)) for v in value):
            feature = _delimited(1, b"".join(_delimited(1, bytes(v)) for v in value))
        else:
            arr = np.asarray(value)
            if arr.dtype.kind in "iub":
                packed = b"".join(_encode_varint(int(v)) for v in arr.ravel())
                feature = _delimited(3, _delimited(1, packed))
            elif arr.dtype.kind == "f":
                feature = _delimited(2, _delimited(1, arr.astype("<f4").ravel().tobytes()))
            else:
                raise TypeError(f"feature {name!r}: expected bytes, a list of bytes, integers or floats; got "
                                f"{type(value).__name__} of dtype {arr.dtype}")
        entries += _delimited(1, _delimited(1, name.encode("utf-8")) + _delimited(2, feature))
    return _delimited(1, entries)
