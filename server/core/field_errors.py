"""Refused bodies in words a person reads, every problem at once, each naming its field.

msgspec stops at a body's first problem and says it in a programmer's words ("Expected `int`, got
`float` - at `$.sections[0].price`"). `problems()` walks the decoded JSON against the wanted type
(msgspec.inspect) and finds every problem, each a FieldError {path, message} ("Price must be a
whole number of cents"); handlers' own rule checks add theirs in the same shape;
server.core.errors.Invalid.of() turns them into the one 422 answer: `{"error": "invalid",
"detail": <the first, as a sentence>, "fields": [{path, message}, …]}` (API.md's error shape,
extended)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from msgspec import inspect

from server.core.errors import FieldError, from_validation
from server.core.messages import check_currency, check_timezone

# What a person calls a field (the last part of its path); others: "max_foo" → "Max foo".
LABELS = {
    "id": "Id",
    "starts_at": "Event start",
    "sale_starts_at": "Sale start",
    "prequeue_opens_at": "Pre-queue opening",
    "seats_per_row": "Seats per row",
    "rate_per_min": "Admissions per minute",
    "max_active": "Max active sessions",
    "session_minutes": "Session length",
    "hold_minutes": "Hold length",
    "max_seats_per_order": "Max seats per order",
    "max_tickets_per_buyer": "Max tickets per buyer",
    "timezone": "Time zone",
    "image_url": "Image URL",
}
# The unit a number field counts in, said after it.
UNITS = {"price": "cents", "session_minutes": "minutes", "hold_minutes": "minutes"}
# What a text field must look like when its pattern refuses it, by (struct, field) or field.
HINTS = {
    "currency": "must be a three-letter ISO 4217 code in capitals, such as EUR",
    "timezone": "must be a time zone name such as Europe/Berlin",
    "image_url": "must be an https:// address or a path on this site such as /static/poster.jpg,"
    " without spaces, quotes or angle brackets",
    "description": "must be plain text: line breaks are fine, other control characters are not",
    ("SectionIn", "id"): "must be 1 to 8 letters or digits, such as A or GA",
    ("EventCreate", "id"): "must be lower-case letters, digits and dashes, such as spring-tour",
    ("SeatsPatch", "seats"): "must be written section-row-seat, such as A-3-17",
    ("TokenCreate", "name"): "must be 1 to 40 of a-z, 0-9, '.', '_' or '-', starting with a"
    " letter or digit",
    ("OperatorCreate", "email"): "must be one email address, such as name@example.com",
}
# Checks beyond the schema that belong to one field (they raise ValueError "field: why").
CHECKS: dict[str, Callable[[str], None]] = {
    "currency": check_currency,
    "timezone": check_timezone,
}
EXAMPLE_TIME = "2027-03-01T20:00:00Z"


def label(path: str) -> str:
    leaf = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
    return LABELS.get(leaf) or leaf.replace("_", " ").capitalize() or "The body"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _hint(owner: str, name: str) -> str | None:
    return HINTS.get((owner, name)) or HINTS.get(name)


def _unit(name: str) -> str:
    unit = UNITS.get(name)
    return f" {unit}" if unit else ""


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {_number(low)} to {_number(high)}"
    if low is not None:
        return f"at least {_number(low)}"
    return f"at most {_number(high or 0)}"


def _int(value: Any, t: inspect.IntType, name: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a whole number{' of ' + UNITS[name] if name in UNITS else ''}"
    if isinstance(value, float) and not value.is_integer():
        return f"must be a whole number{' of ' + UNITS[name] if name in UNITS else ''}"
    low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
    high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
    if (low is not None and value < low) or (high is not None and value > high):
        return f"must be {_range(low, high)}{_unit(name)}"
    return None


def _float(value: Any, t: inspect.FloatType) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    bounds = [
        (t.gt, value <= t.gt if t.gt is not None else False, "more than"),
        (t.ge, value < t.ge if t.ge is not None else False, "at least"),
        (t.lt, value >= t.lt if t.lt is not None else False, "less than"),
        (t.le, value > t.le if t.le is not None else False, "at most"),
    ]
    if not any(broken for _, broken, _ in bounds):
        return None
    return "must be " + " and ".join(f"{w} {_number(b)}" for b, _, w in bounds if b is not None)


def _str(value: Any, t: inspect.StrType, owner: str, name: str) -> str | None:
    if not isinstance(value, str):
        return "must be text"
    if t.min_length and len(value) < t.min_length:
        return "is required" if not value else f"must be at least {t.min_length} characters"
    if t.pattern is not None and not re.search(t.pattern, value):
        return _hint(owner, name) or "has characters that are not allowed here"
    if t.max_length is not None and len(value) > t.max_length:
        return f"must be at most {t.max_length} characters"
    check = CHECKS.get(name)
    if check is not None:
        try:
            check(value)
        except ValueError as exc:
            return str(exc).split(": ", 1)[-1]
    return None


def _datetime(value: Any, t: inspect.DateTimeType) -> str | None:
    try:
        when = msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        return f"must be a date and time, like {EXAMPLE_TIME}"
    if t.tz and when.tzinfo is None:
        return f"must give its offset from UTC (Z or +hh:mm), like {EXAMPLE_TIME}"
    return None


def _walk(value: Any, t: inspect.Type, path: str, owner: str, name: str) -> list[FieldError]:
    """Every problem of `value` as type `t` at `path` (a field `name` of struct `owner`)."""
    if isinstance(t, inspect.Metadata):
        return _walk(value, t.type, path, owner, name)
    if isinstance(t, inspect.UnionType):
        if value is None and any(isinstance(m, inspect.NoneType) for m in t.types):
            return []
        members = [m for m in t.types if not isinstance(m, inspect.NoneType)]
        if len(members) == 1:
            return _walk(value, members[0], path, owner, name)
        return []  # a real choice of types: left to msgspec (refusal's backstop)
    if isinstance(t, inspect.StructType):
        return _struct(value, t, path)
    if isinstance(t, inspect.ListType):
        return _list(value, t, path, owner, name)
    why: str | None = None
    if isinstance(t, inspect.IntType):
        why = _int(value, t, name)
    elif isinstance(t, inspect.FloatType):
        why = _float(value, t)
    elif isinstance(t, inspect.StrType):
        why = _str(value, t, owner, name)
    elif isinstance(t, inspect.DateTimeType):
        why = _datetime(value, t)
    elif isinstance(t, inspect.BoolType) and not isinstance(value, bool):
        why = "must be true or false"
    elif isinstance(t, inspect.LiteralType) and value not in t.values:
        why = "must be one of " + ", ".join(str(v) for v in t.values)
    return [] if why is None else [FieldError(path, f"{label(path)} {why}")]


def _struct(value: Any, t: inspect.StructType, path: str) -> list[FieldError]:
    if not isinstance(value, dict):
        return [FieldError(path, f"{label(path)} must be an object with named fields")]
    owner = t.cls.__name__
    found: list[FieldError] = []
    for f in t.fields:
        where = _join(path, f.encode_name)
        if f.encode_name in value:
            found += _walk(value[f.encode_name], f.type, where, owner, f.encode_name)
        elif f.required:
            found.append(FieldError(where, f"{label(where)} is required"))
    known = {f.encode_name for f in t.fields}
    if t.forbid_unknown_fields:
        found += [
            FieldError(_join(path, f"{k!s:.40}"), f"{k!s:.40} is not a field here")
            for k in value
            if k not in known
        ]
    return found


def _list(value: Any, t: inspect.ListType, path: str, owner: str, name: str) -> list[FieldError]:
    if not isinstance(value, list):
        return [FieldError(path, f"{label(path)} must be a list")]
    if t.min_length and len(value) < t.min_length:
        return [FieldError(path, f"{label(path)}: give at least {t.min_length}")]
    if t.max_length is not None and len(value) > t.max_length:
        return [FieldError(path, f"{label(path)}: at most {t.max_length}")]
    found: list[FieldError] = []
    for i, item in enumerate(value):
        found += _walk(item, t.item_type, f"{path}[{i}]", owner, name)
    return found


def problems(value: Any, kind: Any) -> list[FieldError]:
    """Every problem of a decoded JSON value as `kind` (a type msgspec can convert to)."""
    return _walk(value, inspect.type_info(kind), "", "", "")


def of_body(plain: Any, kind: Any, exc: msgspec.ValidationError) -> list[FieldError]:
    """The problems of a body msgspec refused: every one found by walking it, or msgspec's own
    if the walk finds none (a rule of the type it does not model)."""
    return problems(plain, kind) or [from_validation(exc)]
