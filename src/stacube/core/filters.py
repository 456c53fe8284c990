"""CQL2 filters: bounds checked before any CQL2 parser sees them, and the text encoding read
into the JSON one (pgSTAC evaluates CQL2-JSON).

The cql2 library that stac-fastapi-pgstac and titiler-pgstac call validates every filter against
the CQL2 JSON schema, and that validation costs about 50 ms and 10 MB more per nested ``NOT``
(measured with cql2 0.6.0; see docs/security.md): a 500-byte filter of 100 nested ``NOT`` took
seconds and gigabytes. :func:`check_filter` measures a filter without parsing it as CQL2 - a
linear scan of the text, or a walk of the JSON document - and refuses one that is too long, too
deeply nested, has too many parts, or nests too many ``NOT``:

* length: characters of the text (or of the JSON as sent);
* depth: nesting of operators (cql2-json ``{"op": ...}`` objects; parentheses and ``NOT`` in
  cql2-text);
* nodes: operators and operands;
* ``NOT`` nesting: ``NOT`` operators on one path from the root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from stacube.errors import InvalidInput

_TOKEN = re.compile(r"""\s*(?:('(?:[^']|'')*'?)|("(?:[^"]|"")*"?)|([A-Za-z_][A-Za-z0-9_:.\-]*)|(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)|(<>|<=|>=|!=|[()=<>,+\-*/%\[\]]))""")
#: After one of these (or at the start), ``NOT`` starts a boolean factor; elsewhere it is part
#: of a predicate (``a NOT LIKE 'x'``, ``a IS NOT NULL``).
_FACTOR_START = {None, "(", "AND", "OR", "NOT", ","}


@dataclass(frozen=True)
class FilterLimits:
    """The bounds (see the module docstring); from ``STACUBE_FILTER_MAX_*``."""

    max_length: int = 20000
    max_depth: int = 10
    max_nodes: int = 2000
    max_not: int = 3

    @classmethod
    def from_settings(cls, settings) -> FilterLimits:
        return cls(settings.filter_max_length, settings.filter_max_depth, settings.filter_max_nodes,
                   settings.filter_max_not)


@dataclass(frozen=True)
class FilterSize:
    """What :func:`measure_text` / :func:`measure_json` found."""

    length: int
    depth: int
    nodes: int
    nots: int


def measure_text(text: str) -> FilterSize:
    """Length, nesting depth, parts and ``NOT`` nesting of a cql2-text filter (no CQL2 parse)."""
    depth = max_depth = nodes = max_nots = 0
    # per open parenthesis: NOTs active at that level (a NOT binds tighter than AND/OR, so an
    # AND/OR at the same level ends it; NOTs of outer levels stay active inside)
    levels: list[list[int]] = [[0, 0]]  # [nots active at this level, nots inherited]
    previous: str | None = None
    position, end = 0, len(text)
    while position < end:
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            position += 1  # a character no token starts with: the parser will refuse it
            continue
        position = match.end()
        string, quoted, word, number, symbol = match.groups()
        token = (word or "").upper() if word else (symbol or ("'" if string is not None else
                                                              ('"' if quoted is not None else number)))
        if token is None:
            continue
        nodes += 1
        if token == "(":
            depth += 1
            max_depth = max(max_depth, depth)
            active = levels[-1][0] + levels[-1][1]
            levels.append([0, active])
        elif token == ")":
            if len(levels) > 1:
                levels.pop()
                depth -= 1
        elif token in ("AND", "OR"):
            levels[-1][0] = 0
        elif token == "NOT" and previous in _FACTOR_START:
            levels[-1][0] += 1
            max_nots = max(max_nots, levels[-1][0] + levels[-1][1])
        previous = token
    return FilterSize(len(text), max_depth + max_nots + 1, nodes, max_nots)


def measure_json(doc) -> FilterSize:
    """Nesting depth, parts and ``NOT`` nesting of a cql2-json filter (an iterative walk: a
    document nested a thousand deep costs no recursion). The depth is the nesting of operators,
    or a quarter of the document's own nesting when that is more (arrays of arrays nested
    without end would overflow a recursive JSON reader further on)."""
    nodes = max_depth = max_nots = max_raw = 0
    stack = [(doc, 0, 0, 1)]
    while stack:
        value, depth, nots, raw = stack.pop()
        nodes += 1
        max_raw = max(max_raw, raw)
        if isinstance(value, dict):
            op = value.get("op")
            if isinstance(op, str):
                depth += 1
                if op.lower() == "not":
                    nots += 1
            max_depth, max_nots = max(max_depth, depth), max(max_nots, nots)
            stack.extend((v, depth, nots, raw + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth, nots, raw + 1) for v in value)
    return FilterSize(0, max(max_depth, -(-max_raw // 4)), nodes, max_nots)


def check_filter(value, lang: str | None, limits: FilterLimits) -> None:
    """Refuse a filter beyond ``limits``, before any CQL2 parser sees it.

    Args:
        value: the filter: cql2-text (a string), cql2-json (a string of JSON, or the document).
        lang: ``cql2-text`` or ``cql2-json`` (None: text for strings, JSON for documents).

    Raises:
        InvalidInput: the first bound exceeded, with its value and the limit.
    """
    if value is None:
        return
    length = len(value) if isinstance(value, str) else None
    if length is not None and length > limits.max_length:
        raise InvalidInput(f"filter is {length} characters long; the limit is {limits.max_length} "
                           "(STACUBE_FILTER_MAX_LENGTH)")
    if isinstance(value, str) and (lang == "cql2-json" or (lang is None and value.lstrip().startswith("{"))):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return  # not JSON (or nested beyond what JSON readers take): the API answers with its reason
    size = measure_text(value) if isinstance(value, str) else measure_json(value)
    if size.depth > limits.max_depth:
        raise InvalidInput(f"filter nests {size.depth} levels deep; the limit is {limits.max_depth} "
                           "(STACUBE_FILTER_MAX_DEPTH)")
    if size.nodes > limits.max_nodes:
        raise InvalidInput(f"filter has {size.nodes} parts; the limit is {limits.max_nodes} "
                           "(STACUBE_FILTER_MAX_NODES)")
    if size.nots > limits.max_not:
        raise InvalidInput(f"filter nests {size.nots} NOT operators; the limit is {limits.max_not} "
                           "(STACUBE_FILTER_MAX_NOT)")
    if length is None and not isinstance(value, str):
        length = len(orjson.dumps(value))  # bounded: depth and parts are within the limits
        if length > limits.max_length:
            raise InvalidInput(f"filter is {length} characters long; the limit is {limits.max_length} "
                               "(STACUBE_FILTER_MAX_LENGTH)")


def cql2_json(text) -> dict:
    """A CQL2-text filter as CQL2-JSON (pgSTAC evaluates CQL2-JSON).

    Raises:
        InvalidInput: the filter does not parse.
    """
    import cql2

    if isinstance(text, dict):
        return text
    try:
        return cql2.Expr(str(text)).to_json()
    except Exception as exc:  # cql2 raises its own ValueError subclasses
        raise InvalidInput(f"invalid CQL2 filter {text!r}: {cql2_reason(exc)}") from exc


def cql2_reason(exc: Exception) -> str:
    """One line from a cql2 parser error: where (``at 1:17``) and what it expected."""
    lines = [line.strip() for line in str(exc).splitlines()]
    where = next((line[3:].strip() for line in lines if line.startswith("-->")), None)
    what = next((line[1:].strip() for line in lines if line.startswith("=")), None)
    if where or what:
        return ", ".join(x for x in (f"at {where}" if where else None, what) if x)
    return lines[0] if lines and lines[0] else type(exc).__name__
