"""RFC 8785 JSON Canonicalization Scheme (JCS), fast.

``dumps(value)`` returns the JCS bytes (UTF-8) of a value made of ``dict`` (``str`` keys only),
``list``/``tuple``, ``str``, ``int``, ``float``, ``bool`` and ``None`` (subclasses of these count
as the base type, so ``IntEnum``/``StrEnum`` members and named tuples are accepted):

* object members are sorted by the UTF-16 code units of their names, as JCS requires (this
  differs from Python's code-point order only for names mixing U+E000..U+FFFF with characters
  beyond U+FFFF);
* strings are escaped as ECMAScript ``JSON.stringify`` does: ``\\"``, ``\\\\``, ``\\b``, ``\\t``,
  ``\\n``, ``\\f``, ``\\r``, every other character below U+0020 as ``\\u00xx`` (lowercase hex),
  everything else (U+007F, U+2028, U+2029, non-BMP characters, ...) as its UTF-8 bytes;
* numbers are written as ECMAScript ``Number::toString`` writes them: the shortest digits that
  round-trip (Python's ``repr``), integral values without ``.0`` (``1.0`` -> ``1``), plain digits
  up to 1e21 (``1e+20`` -> ``100000000000000000000``), exponent form from 1e21 up and below
  1e-6 (``1e+21``, ``1.5e-7``), and ``-0.0`` -> ``0``.

Extension to strict JCS: ``int`` values outside ±(2**53 - 1), which JCS cannot represent (every
JSON number is an IEEE 754 double there; the ``rfc8785`` package raises for them), are written as
their exact decimal digits. Within the safe range the output is byte-for-byte that of
``rfc8785.dumps``. Integers with more decimal digits than ``sys.get_int_max_str_digits()`` are
refused.

Refused, with a ``CanonicalError`` naming the path of the offending value (for example
``details.metrics.auc: NaN is not allowed``): NaN and ±Infinity, non-``str`` object keys,
strings or keys with lone surrogates (they have no UTF-8 encoding), values of any other type,
circular references.

Speed: strings are escaped by the C ``json.encoder.encode_basestring`` (whose escapes are exactly
the ones above, checked for every code point by the tests), and the sorted, escaped member names
of each distinct key set are cached, so a typical 500-byte audit event takes a few microseconds.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from json import dumps as _json_dumps
from json.encoder import encode_basestring as _escape

__all__ = ["CanonicalError", "dumps"]


class CanonicalError(ValueError):
    """The value cannot be written as canonical JSON; the message names where and why."""


class _Refused(Exception):
    """Internal: the fast path met something it will not encode; the slow path says what."""


_int_repr = int.__repr__
_float_repr = float.__repr__

# Sorted member names, per distinct key tuple (in insertion order): the escaped name with its
# leading "{" or "," and trailing ":", and the name itself. Bounded; only small key sets are kept.
_Members = list[tuple[str, str]]
_KEY_CACHE: dict[tuple[str, ...], _Members] = {}
_KEY_CACHE_MAX_ENTRIES = 2048
_KEY_CACHE_MAX_CHARS = 2048


def _utf16_units(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly as the sequence of UTF-16 code units does.
    return key.encode("utf-16-be", "surrogatepass")


def _members(obj: dict[str, object]) -> _Members:
    names = tuple(obj)
    members = _KEY_CACHE.get(names)
    if members is None:
        keys = sorted(names)  # TypeError for mixed key types
        joined = "".join(keys)  # TypeError for keys that are not str
        if not joined.isascii():
            keys.sort(key=_utf16_units)
        members = [("," + _escape(key) + ":", key) for key in keys]
        members[0] = ("{" + members[0][0][1:], members[0][1])
        if len(joined) <= _KEY_CACHE_MAX_CHARS:
            if len(_KEY_CACHE) >= _KEY_CACHE_MAX_ENTRIES:
                _KEY_CACHE.clear()
            _KEY_CACHE[names] = members
    return members


def _float(value: float) -> str:
    text = _float_repr(value)
    if "e" in text:
        return _exponent_form(text)
    if text[-2:] == ".0":
        text = text[:-2]
        return "0" if text == "-0" else text
    if text[-1] in "fn":  # inf, -inf, nan
        raise _Refused
    return text


def _exponent_form(text: str) -> str:
    # Python's repr switches to exponent form below 1e-4 and from 1e16 up; ECMAScript only
    # below 1e-6 and from 1e21 up, and writes no leading zeros in the exponent.
    mantissa, _, exp_text = text.partition("e")
    sign = ""
    if mantissa[0] == "-":
        sign, mantissa = "-", mantissa[1:]
    exp = int(exp_text)
    if -7 < exp < 21:
        digits = mantissa.replace(".", "")
        if exp > 0:  # 16 <= exp <= 20 here, and there are at most 17 digits
            return sign + digits + "0" * (exp + 1 - len(digits))
        return sign + "0." + "0" * (-exp - 1) + digits
    return sign + mantissa + ("e+" if exp > 0 else "e-") + str(abs(exp))


def _encode(value: object, out: Callable[[str], None]) -> None:
    kind = type(value)
    if kind is dict:
        obj: dict[str, object] = value  # type: ignore[assignment]
        if not obj:
            out("{}")
            return
        for prefix, key in _members(obj):
            out(prefix)
            item = obj[key]
            item_kind = type(item)
            if item_kind is str:
                out(_escape(item))  # type: ignore[arg-type]
            elif item_kind is int:
                out(_int_repr(item))
            else:
                _encode(item, out)
        out("}")
    elif kind is str:
        out(_escape(value))  # type: ignore[arg-type]
    elif kind is int:
        out(_int_repr(value))
    elif kind is float:
        out(_float(value))  # type: ignore[arg-type]
    elif kind is list or kind is tuple:
        seq: list[object] = value  # type: ignore[assignment]
        if not seq:
            out("[]")
            return
        sep = "["
        for item in seq:
            out(sep)
            sep = ","
            item_kind = type(item)
            if item_kind is str:
                out(_escape(item))  # type: ignore[arg-type]
            elif item_kind is int:
                out(_int_repr(item))
            else:
                _encode(item, out)
        out("]")
    elif value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    # Subclasses of the JSON types (IntEnum, StrEnum, OrderedDict, named tuples, ...).
    elif isinstance(value, str):
        out(_escape(value))
    elif isinstance(value, int):
        out(_int_repr(value))
    elif isinstance(value, float):
        out(_float(float(value)))
    elif isinstance(value, dict):
        _encode(dict(value), out)
    elif isinstance(value, list | tuple):
        _encode(list(value), out)
    else:
        raise _Refused


def dumps(value: object) -> bytes:
    """The RFC 8785 canonical JSON bytes of ``value``; ``CanonicalError`` if it has none."""
    parts: list[str] = []
    try:
        _encode(value, parts.append)
        return "".join(parts).encode("utf-8")
    except (_Refused, TypeError, ValueError, RecursionError) as exc:
        failure: BaseException = exc
    problem = _diagnose(value)
    if problem is not None:
        raise CanonicalError(problem) from None
    if isinstance(failure, RecursionError):
        raise CanonicalError("value is nested too deeply to canonicalize") from None
    raise failure  # not a property of the value that we know of: let the real error show


# -- the slow path: find and name what the fast path refused ---------------------------------

_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_\-]+")

_Children = Iterator[tuple[str, object]]


def _where(path: str) -> str:
    return path or "(root)"


def _member_path(path: str, key: str) -> str:
    if _SIMPLE_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_json_dumps(key)}]"


def _lone_surrogate(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"U+{ord(text[exc.start]):04X}"
    return None


def _inspect(path: str, value: object) -> tuple[str | None, _Children | None]:
    """A problem with ``value`` itself, or the iterator over its children (for containers)."""
    where = _where(path)
    if value is None or isinstance(value, bool):
        return None, None
    if isinstance(value, str):
        surrogate = _lone_surrogate(value)
        if surrogate is not None:
            return f"{where}: string has a lone surrogate {surrogate}, which is not UTF-8", None
        return None, None
    if isinstance(value, int):
        try:
            _int_repr(value)
        except ValueError:
            limit = sys.get_int_max_str_digits()
            return f"{where}: integer has more than {limit} decimal digits", None
        return None, None
    if isinstance(value, float):
        if value != value:
            return f"{where}: NaN is not allowed", None
        if value in (float("inf"), float("-inf")):
            name = "Infinity" if value > 0 else "-Infinity"
            return f"{where}: {name} is not allowed", None
        return None, None
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                kind = type(key).__name__
                return f"{where}: object key {key!r} is {kind}, not str", None
            surrogate = _lone_surrogate(key)
            if surrogate is not None:
                return (
                    f"{where}: object key {key!r} has a lone surrogate {surrogate}, "
                    "which is not UTF-8",
                    None,
                )
        keys = sorted(value, key=_utf16_units)
        return None, iter([(_member_path(path, key), value[key]) for key in keys])
    if isinstance(value, list | tuple):
        return None, ((f"{path}[{index}]", item) for index, item in enumerate(value))
    kind = type(value).__qualname__
    return (
        f"{where}: {kind} is not a JSON type (dict, list, tuple, str, int, float, bool or None)",
        None,
    )


def _diagnose(value: object) -> str | None:
    """The first problem in ``value`` (in canonical order), found without recursion."""
    problem, children = _inspect("", value)
    if problem is not None or children is None:
        return problem
    active = {id(value)}
    stack: list[tuple[int, _Children]] = [(id(value), children)]
    while stack:
        container_id, iterator = stack[-1]
        entry = next(iterator, None)
        if entry is None:
            stack.pop()
            active.discard(container_id)
            continue
        path, child = entry
        problem, children = _inspect(path, child)
        if problem is not None:
            return problem
        if children is not None:
            if id(child) in active:
                return f"{_where(path)}: circular reference"
            active.add(id(child))
            stack.append((id(child), children))
    return None
