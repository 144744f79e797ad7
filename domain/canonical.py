"""Canonical JSON (RFC 8785, JCS) written fast, for the Merkle leaves of every stored event.

The ``rfc8785`` package is a faithful pure-Python encoder and cost about 0.25 ms an event on
the write path. For the values our events hold, the C encoder of the standard library writes the
same bytes when three things hold, checked here before it is trusted (RFC 8785 section 3.2):

- no floats: JCS writes numbers the ECMAScript way (``1`` for ``1.0``, ``1e+21``), Python does
  not; integers beyond +-(2**53 - 1) are refused by JCS (IEEE 754 cannot hold them exactly);
- member names sort the same by UTF-16 code units (JCS, 3.2.3) as by code points (Python): they
  differ only when a name holds a character above U+D7FF, so such names go the slow way;
- strings: JCS escapes exactly ``"``, ``\\`` and the controls below U+0020, using the short
  forms ``\\b \\f \\n \\r \\t`` and ``\\u00xx`` in lower case otherwise, and writes everything else
  as UTF-8, which is what ``json.dumps(..., ensure_ascii=False)`` does.

Anything else falls back to ``rfc8785`` itself. ``tests/unit/test_canonical.py`` proves byte
equality with ``rfc8785`` on Hypothesis-generated JSON and on generated events.
"""

import json
from typing import Any

import rfc8785

__all__ = ["Splice", "dumps"]

_MAX_SAFE_INTEGER = 2**53 - 1
_LAST_SAFE_NAME_CHAR = "\ud7ff"
_STAND_IN = str(_MAX_SAFE_INTEGER).encode()
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def _plain(value: Any) -> bool:
    """Whether the standard encoder writes this value exactly as JCS does.

    Exact types first (what ``model_dump(mode="json")`` gives): this walk runs over every leaf
    the writer seals, so its common cases avoid ``isinstance`` chains and per-key generators.
    """
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is dict:
        for key, member in value.items():
            if type(key) is not str or not (key.isascii() or max(key) <= _LAST_SAFE_NAME_CHAR):
                return _plain_slow(value)
            if type(member) is not str and member is not None and not _plain(member):
                return False
        return True
    if kind is list:
        return all(map(_plain, value))
    return _plain_slow(value)


def _plain_slow(value: Any) -> bool:
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and max(k, default="") <= _LAST_SAFE_NAME_CHAR and _plain(v)
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return False  # floats, and anything JSON has no type for


def dumps(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value, as UTF-8."""
    if _plain(value):
        return _encode(value).encode()
    return rfc8785.dumps(value)


class Splice:
    """The canonical bytes of an object with one integer member still to be filled in.

    The leaf of an event commits to its tenant-log position, which is known only once the write
    lock is held; everything else is encoded before, and under the lock only the number is
    written between the two halves.
    """

    __slots__ = ("_head", "_tail")

    def __init__(self, members: dict[str, Any], name: str) -> None:
        if name in members:
            raise ValueError(f"{name!r} is the member to fill in; it must not be given")
        # Encode once with a stand-in number and cut there. The stand-in's bytes mark the
        # member exactly: inside a string every '"' is escaped, so '"name":' followed by the
        # number can only be a member; one nested deeper with the same name and value would
        # make it appear twice, and then the halves are encoded apart.
        marker = dumps(name) + b":"
        head, found, tail = dumps({**members, name: _MAX_SAFE_INTEGER}).partition(
            marker + _STAND_IN
        )
        if found and marker + _STAND_IN not in tail:
            self._head, self._tail = head + marker, tail
            return
        before = {k: v for k, v in members.items() if _utf16(k) < _utf16(name)}
        after = {k: v for k, v in members.items() if _utf16(k) > _utf16(name)}
        head = dumps(before)[:-1] + (b"," if before else b"")
        self._head = head + dumps(name) + b":"
        self._tail = (b"," + dumps(after)[1:]) if after else b"}"

    def fill(self, number: int) -> bytes:
        """The canonical bytes with the member set to ``number``."""
        if not -_MAX_SAFE_INTEGER <= number <= _MAX_SAFE_INTEGER:
            raise ValueError("JCS cannot write an integer beyond +-(2**53 - 1)")
        return self._head + str(number).encode() + self._tail


def _utf16(name: str) -> bytes:
    return name.encode("utf-16-be")
