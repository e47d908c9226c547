"""A parsed JSON value as the text a COPY into a typed stage column sends:
the pure-Python rules, and the specification of the C renderer
(``csrc/render.c``).

PostgreSQL's ``jsonb_to_record`` (the jsonb path of merge.py) gives a column
the type input of a text: a JSON string's unescaped text, a number's
``numeric_out`` text, ``true``/``false``, and for anything else the jsonb
text of the value; a json or jsonb column gets the value itself; an array
column gets its elements one by one. A typed COPY gives the type input the
text it sends, so a value may be rendered only where that text is exactly
what ``jsonb_to_record`` would pass on. Everything else renders as None: the
record then goes the jsonb path, and no result ever depends on this module.

What this module cannot see, C can: orjson has turned ``1.50`` into the float
1.5 (numeric keeps ``1.50``), so floats render here only into ``float8``
columns (shortest round-trip text, the same double), and a jsonb value
holding a float is left to the jsonb path. C reads the number's own text.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

# Column kinds (schema.TableSchema.kinds)
SCALAR, FLOAT8, JSONB, JSON, ARRAY, OTHER = "s", "f", "j", "J", "a", "x"

NULL = "\\N"
# A COPY text field: backslash first, then the characters that end fields/rows.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(text: str) -> str:
    """``text`` as one field of a text-format COPY line."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def copy_bytes(doc: bytes) -> bytes:
    """A UTF-8 text as one COPY field (for a jsonb stage document)."""
    return doc.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def _scalar_text(value: Any, float8: bool) -> str | None:
    """The text jsonb_to_record hands a scalar type's input, or None."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and float8 and math.isfinite(value) and value != 0.0:
        # Not a zero: "-0.0" is 0 through numeric, and "1e-400" is 0.0 to
        # orjson but out of range to float8.
        return repr(value)
    return None  # a float whose decimal text is lost, an object, an array


# Deeper values go the jsonb path: orjson writes at most 255 levels, and
# Python's own recursion would give out well before what JSON allows.
MAX_JSON_DEPTH = 128


def _exact_json(value: Any) -> bool:
    """Whether orjson writes ``value`` back as JSON that jsonb reads to the
    same value: no floats (their text is lost), no ints past 64 bits, and at
    most MAX_JSON_DEPTH levels (walked without recursion: a record may nest
    as deep as orjson reads)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth > MAX_JSON_DEPTH:
                return False
            stack.extend((v, depth + 1) for v in (item.values() if kind is dict else item))
        elif kind is int:
            if not -(2**63) <= item < 2**64:
                return False
        elif kind is float:
            return False
    return True


def _array_literal(values: list[Any]) -> str | None:
    """A one-dimensional array literal, every element quoted (so its text
    reaches the element type's input as is), JSON null as NULL."""
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
            continue
        text = _scalar_text(value, False)
        if text is None:
            return None  # nested arrays, objects, floats
        parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def render(kind: str, value: Any) -> str | None:
    """The COPY field for ``value`` (parsed by orjson) in a column of
    ``kind``; None where only the jsonb path is exact."""
    if value is None:
        return NULL  # a JSON null is SQL NULL in every kind of column
    if kind in (SCALAR, FLOAT8):
        text = _scalar_text(value, kind == FLOAT8)
    elif kind == JSONB:
        text = orjson.dumps(value).decode() if _exact_json(value) else None
    elif kind == ARRAY:
        text = _array_literal(value) if type(value) is list else None
    else:
        return None  # json keeps its text as jsonb normalizes it; composites
    return None if text is None else copy_text(text)
