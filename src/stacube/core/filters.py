"""CQL2 filters: the text encoding read into the JSON one (pgSTAC evaluates CQL2-JSON)."""

from __future__ import annotations

from stacube.errors import InvalidInput


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
