"""Building blocks of the config schema: strict section base class, range types, errors.

Every YAML file in ``config/`` has one root model (a :class:`Section`). A key is one line,
``name: <type>``, where the type carries the allowed range (``Pos``, ``Frac``, ``Count``...
or ``Annotated[float, Field(ge=.., le=..)]``). Models carry no defaults: the shipped YAML
is the single source of values, the model only says what is allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from vla_edge.errors import ConfigError

__all__ = [
    "AnyFloat",
    "Count",
    "Frac",
    "Index",
    "NonNeg",
    "NonNegInt",
    "Pos",
    "Section",
    "format_errors",
    "irng",
    "ordered",
    "rng",
]


class Section(BaseModel):
    """Strict mapping: unknown keys, wrong types (``"1"`` for a number), NaN/inf all fail."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def rng(
    ge: float | None = None, le: float | None = None, gt: float | None = None, lt: float | None = None
) -> Any:
    """Float in a range, e.g. ``rng(ge=0, le=1)``."""
    return Annotated[float, Field(ge=ge, le=le, gt=gt, lt=lt)]


def irng(ge: int | None = None, le: int | None = None) -> Any:
    """Integer in a range."""
    return Annotated[int, Field(ge=ge, le=le)]


AnyFloat = float  # finite (Section forbids NaN/inf), any sign
Pos = Annotated[float, Field(gt=0)]  # > 0 (periods, spans, limits)
NonNeg = Annotated[float, Field(ge=0)]  # >= 0 (margins, weights, 0 = off)
Frac = Annotated[float, Field(ge=0, le=1)]  # probability / ratio
Count = Annotated[int, Field(ge=1)]  # >= 1
NonNegInt = Annotated[int, Field(ge=0)]  # >= 0 (0 = off / auto)
Index = Annotated[int, Field(ge=0)]
Pair = Annotated[list[AnyFloat], Field(min_length=2, max_length=2)]  # (easy, hard) or (low, high)
NonNegPair = Annotated[list[NonNeg], Field(min_length=2, max_length=2)]
FracPair = Annotated[list[Frac], Field(min_length=2, max_length=2)]


def ordered(*pairs: tuple[str, str], strict: bool = False) -> Callable[[Any], Any]:
    """``model_validator`` that requires ``low <= high`` (or ``<``) for each (low, high) pair."""

    def check(self: Any) -> Any:
        for lo, hi in pairs:
            a, b = getattr(self, lo), getattr(self, hi)
            if a is None or b is None:
                continue
            if a > b or (strict and a == b):
                op = "<" if strict else "<="
                raise ValueError(f"'{lo}' ({a}) must be {op} '{hi}' ({b})")
        return self

    return model_validator(mode="after")(check)


# ----------------------------------------------------------------------------- messages
def _bounds(metadata: list[Any]) -> str:
    """``"0 < value <= 1"`` / ``"2 items"`` from annotated-types metadata ('' when unbounded)."""
    lo = hi = ""
    length = [None, None]
    for m in metadata:
        if isinstance(m, FieldInfo):
            inner = _bounds(m.metadata)
            if inner:
                return inner
        for attr, is_lo, op in (
            ("gt", True, "<"),
            ("ge", True, "<="),
            ("lt", False, "<"),
            ("le", False, "<="),
        ):
            val = getattr(m, attr, None)
            if val is not None:
                if is_lo:
                    lo = f"{val} {op} "
                else:
                    hi = f" {op} {val}"
        if getattr(m, "pattern", None) is not None:
            return f"matching {m.pattern}"
        if getattr(m, "min_length", None) is not None:
            length[0] = m.min_length
        if getattr(m, "max_length", None) is not None:
            length[1] = m.max_length
    if lo or hi:
        return f"{lo}value{hi}"
    if length[0] is not None and length[0] == length[1]:
        return f"exactly {length[0]} items"
    if length[0]:
        return f"at least {length[0]} item{'s' if length[0] > 1 else ''}"
    return ""


def _allowed(annotation: Any, metadata: list[Any] | None = None) -> str:
    """Human description of what a field accepts: 'number, 0 < value <= 1', 'one of a | b'..."""
    bounds = _bounds(metadata or [])
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *meta = get_args(annotation)
        text = _allowed(base, meta)
    elif origin is Literal:
        text = "one of " + " | ".join(repr(a) for a in get_args(annotation))
    elif origin in (list, tuple):
        args = get_args(annotation)
        text = f"list of ({_allowed(args[0])})" if args else "list"
    elif origin is dict:
        text = f"mapping name -> ({_allowed(get_args(annotation)[1])})"
    elif origin is not None and get_args(annotation):  # X | Y (| None)
        parts = [("null" if a is type(None) else _allowed(a)) for a in get_args(annotation)]
        text = " or ".join(parts)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = "mapping of " + ", ".join(annotation.model_fields)
    else:
        names = {float: "number", int: "integer", bool: "true/false", str: "string"}
        text = names.get(annotation, getattr(annotation, "__name__", str(annotation)))
    return f"{text}, {bounds}" if bounds else text


def _unwrap_model(annotation: Any) -> Any:
    """The model class inside ``Model``, ``Model | None``, ``dict[str, Model]``... or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """Fields by the name used in YAML (the alias when there is one)."""
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> FieldInfo | None:
    """FieldInfo of the last field named in ``loc`` (dict keys / list indexes are skipped)."""
    current: type[BaseModel] | None = model
    info: FieldInfo | None = None
    for part in loc:
        if current is None:
            break
        fields = _fields(current)
        if isinstance(part, str) and part in fields:
            info = fields[part]
            current = _unwrap_model(info.annotation)
    return info


# pydantic adds union members / validator wrappers to an error's location: not YAML keys.
_TAG = re.compile(
    r"^(constrained-\w+|literal\[.*\]|function-\w+(\[.*\])?|list\[.*\]|dict\[.*\]|"
    r"float|int|str|bool|none|is-instance\[.*\])$"
)


def _clean(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and _TAG.match(p)))


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def format_errors(exc: ValidationError, model: type[BaseModel], where: str, prefix: str = "") -> str:
    """One line per bad key: file, key path, what is wrong, the allowed range, what to do."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for err in exc.errors(include_url=False):
        groups.setdefault(_clean(tuple(err["loc"])), []).append(err)
    lines = []
    for loc, errs in groups.items():
        key = (prefix + "." if prefix else "") + _path(loc)
        info = _field_at(model, loc)
        err = errs[0]
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _field_at(model, loc[:-1]) if len(loc) > 1 else None
            holder = _unwrap_model(parent.annotation) if parent is not None else model
            known = sorted(_fields(holder)) if holder is not None else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            home = f"{holder.__module__.replace('.', '/')}.py, class {holder.__name__}" if holder else ""
            lines.append(
                f"{where}: unknown key '{key}'{hint} (allowed here: {', '.join(known)}); "
                f"remove it or fix its spelling (a new key needs one line in {home})"
            )
            continue
        if kind == "missing":
            lines.append(f"{where}: missing key '{key}'; add it (the shipped config/ file has every key)")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if kind == "value_error" and isinstance(err.get("input"), dict):  # cross-key rule of a section
            lines.append(f"{where}: {key}: {msg}; fix one of the two values")
            continue
        value = err.get("input")
        shown = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
        if len(errs) > 1:
            msg = "not an allowed value"
        allowed = _allowed(info.annotation, info.metadata) if info is not None else ""
        lines.append(
            f"{where}: {key} = {shown}: {msg}"
            + (f" (allowed: {allowed})" if allowed else "")
            + "; fix the value (docs/configuration.md lists every key and its range)"
        )
    return "\n".join(lines)


def validate(model: type[BaseModel], data: Any, where: str, prefix: str = "") -> BaseModel:
    """``model.model_validate(data)`` with a :class:`ConfigError` that names file, key and range."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = format_errors(exc, model, where, prefix)
        n = lines.count("\n") + 1
        head = f"{where}: {n} invalid config values:\n" if n > 1 else ""
        raise ConfigError(head + lines) from None
