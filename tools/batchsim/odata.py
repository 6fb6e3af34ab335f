"""The $filter subset of List Tasks / List Jobs: comparisons joined by and/or, startswith(id,'x')."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tools.batchsim.model import SimError
from tools.batchsim.wire import ticks_of

Predicate = Callable[[dict], bool]

_TOKEN = re.compile(r"\s*(?:(\()|(\))|(,)|DateTime'([^']*)'|'((?:[^']|'')*)'|(-?\d+)|([A-Za-z_][A-Za-z0-9_/]*))")
_OPERATORS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "ge": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "le": lambda a, b: a is not None and a <= b,
}


_CREATION_BOUND = re.compile(r"\bcreationTime\s+(ge|lt)\s+DateTime'([^']*)'", re.IGNORECASE)


def creation_range(text: str) -> tuple[int | None, int | None] | None:
    """[low, high) ticks a filter's top-level ``creationTime ge``/``lt`` terms bound it to, so a listing
    can skip to the tasks created then (a pre-filter: the filter itself still decides); None when
    the filter has no such bound or an ``or`` that could widen it."""
    if re.search(r"\bor\b", text, re.IGNORECASE) or "(" in text.replace("DateTime'", ""):
        return None
    try:
        bounds = {operator.lower(): ticks_of(value) for operator, value in _CREATION_BOUND.findall(text)}
    except ValueError:
        return None  # the filter itself refuses it
    if not bounds:
        return None
    return bounds.get("ge"), bounds.get("lt")


def parse_filter(text: str, fields: dict[str, Callable[[Any], Any]]) -> Callable[[Any], bool]:
    """Compile a $filter over the given fields (name -> getter); SimError 400 on anything else."""
    tokens = _tokenize(text)
    position = 0

    def fail(reason: str) -> SimError:
        return SimError(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            {"QueryParameterName": "$filter", "QueryParameterValue": text, "Reason": reason},
        )

    def peek() -> tuple | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple:
        nonlocal position
        if position >= len(tokens):
            raise fail("unexpected end of filter")
        position += 1
        return tokens[position - 1]

    def expect(kind: str) -> tuple:
        token = take()
        if token[0] != kind:
            raise fail(f"expected {kind}")
        return token

    def getter(name: str):
        if name not in fields:
            raise fail(f"unsupported property {name}")
        return fields[name]

    def comparison():
        kind, value = take()
        if kind == "(":
            inner = disjunction()
            expect(")")
            return inner
        if kind != "name":
            raise fail("expected a property name")
        if value == "startswith":
            expect("(")
            get = getter(expect("name")[1])
            expect(",")
            prefix = expect("string")[1]
            expect(")")
            return lambda item: str(get(item) or "").startswith(prefix)
        get = getter(value)
        operator = expect("name")[1]
        if operator not in _OPERATORS:
            raise fail(f"unsupported operator {operator}")
        literal_kind, literal = take()
        if literal_kind not in ("string", "number", "datetime"):
            raise fail("expected a literal")
        compare = _OPERATORS[operator]
        return lambda item: compare(get(item), literal)

    def joined(word: str, operand, combine):
        """operand (word operand)*: 'and' binds tighter than 'or'."""
        parts = [operand()]
        while peek() == ("name", word):
            take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else (lambda item: combine(part(item) for part in parts))

    def conjunction():
        return joined("and", comparison, all)

    def disjunction():
        return joined("or", conjunction, any)

    if tokens is None:
        raise fail("cannot tokenize")
    predicate = disjunction()
    if position != len(tokens):
        raise fail("unexpected text after the filter")
    return predicate


def _tokenize(text: str) -> list[tuple] | None:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            return None
        open_, close, comma, moment, string, number, name = match.groups()
        if open_:
            tokens.append(("(", None))
        elif close:
            tokens.append((")", None))
        elif comma:
            tokens.append((",", None))
        elif moment is not None:
            try:
                tokens.append(("datetime", ticks_of(moment)))
            except ValueError:
                return None
        elif string is not None:
            tokens.append(("string", string.replace("''", "'")))
        elif number is not None:
            tokens.append(("number", int(number)))
        else:
            tokens.append(("name", name))
        position = match.end()
    return tokens
