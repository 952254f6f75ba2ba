"""The standard library functions, as modules named ``stdlib.<namespace>.<name>``.

They resolve by their simple name (``add``) in a pipeline with no ``use`` declaration,
and through ``use stdlib.math`` / ``use stdlib.string as str`` otherwise. ``filter``,
``map``, ``all`` and ``any`` take lambdas and are compiled to inline operations, not
modules (see :mod:`constellation.lang.compiler`).
"""

from __future__ import annotations

import logging

from constellation.core.modules import ModuleDefinition, module

__all__ = ["HIGHER_ORDER", "STDLIB_MODULES"]

logger = logging.getLogger("constellation.stdlib")


# --- stdlib.math --------------------------------------------------------------------------

@module("stdlib.math.add", description="a + b")
def add(a: int, b: int) -> int:
    return a + b


@module("stdlib.math.subtract", description="a - b")
def subtract(a: int, b: int) -> int:
    return a - b


@module("stdlib.math.multiply", description="a * b")
def multiply(a: int, b: int) -> int:
    return a * b


@module("stdlib.math.divide", description="a / b, rounded toward zero; fails when b is 0")
def divide(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError(f"division by zero: {a} / 0")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


@module("stdlib.math.modulo", description="a modulo b (sign of a); fails when b is 0")
def modulo(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError(f"modulo by zero: {a} % 0")
    quotient: int = divide.func(a, b)
    return a - b * quotient


@module("stdlib.math.max", description="the larger of a and b")
def max_(a: int, b: int) -> int:
    return a if a >= b else b


@module("stdlib.math.min", description="the smaller of a and b")
def min_(a: int, b: int) -> int:
    return a if a <= b else b


@module("stdlib.math.abs", description="absolute value")
def abs_(value: int) -> int:
    return abs(value)


@module("stdlib.math.negate", description="-value")
def negate(value: int) -> int:
    return -value


@module("stdlib.math.round", description="nearest integer (halves away from zero)")
def round_(value: float) -> int:
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


# --- stdlib.string ------------------------------------------------------------------------

@module("stdlib.string.concat", description="a followed by b")
def concat(a: str, b: str) -> str:
    return a + b


@module("stdlib.string.string-length", description="number of characters")
def string_length(value: str) -> int:
    return len(value)


@module("stdlib.string.join", description="the strings joined by separator")
def join(list: list[str], separator: str) -> str:
    return separator.join(list)


@module("stdlib.string.split", description="split on a literal substring")
def split(value: str, substring: str) -> list[str]:
    if substring == "":
        raise ValueError("split: the separator must not be empty")
    return value.split(substring)


@module("stdlib.string.contains", description="whether value contains substring")
def contains(value: str, substring: str) -> bool:
    return substring in value


@module("stdlib.string.trim", description="without leading and trailing whitespace")
def trim(value: str) -> str:
    return value.strip()


@module("stdlib.string.replace", description="every target replaced by replacement")
def replace(value: str, target: str, replacement: str) -> str:
    return value.replace(target, replacement)


# --- stdlib.list --------------------------------------------------------------------------

@module("stdlib.list.list-length", description="number of items")
def list_length(list: list[int]) -> int:
    return len(list)


@module("stdlib.list.list-first", description="the first item; fails on an empty list")
def list_first(list: list[int]) -> int:
    if not list:
        raise IndexError("list-first of an empty list")
    return list[0]


@module("stdlib.list.list-last", description="the last item; fails on an empty list")
def list_last(list: list[int]) -> int:
    if not list:
        raise IndexError("list-last of an empty list")
    return list[-1]


@module("stdlib.list.list-is-empty", description="whether the list is empty")
def list_is_empty(list: list[int]) -> bool:
    return not list


@module("stdlib.list.list-sum", description="sum of the items")
def list_sum(list: list[int]) -> int:
    return sum(list)


@module("stdlib.list.list-concat", description="a followed by b")
def list_concat(a: list[int], b: list[int]) -> list[int]:
    return [*a, *b]


@module("stdlib.list.list-contains", description="whether value is in the list")
def list_contains(list: list[int], value: int) -> bool:
    return value in list


@module("stdlib.list.list-reverse", description="the items in reverse order")
def list_reverse(list: list[int]) -> list[int]:
    return list[::-1]


# --- stdlib.bool and stdlib.compare ------------------------------------------------------

@module("stdlib.bool.and", description="a and b")
def and_(a: bool, b: bool) -> bool:
    return a and b


@module("stdlib.bool.or", description="a or b")
def or_(a: bool, b: bool) -> bool:
    return a or b


@module("stdlib.bool.not", description="not value")
def not_(value: bool) -> bool:
    return not value


@module("stdlib.compare.eq-int", description="a == b")
def eq_int(a: int, b: int) -> bool:
    return a == b


@module("stdlib.compare.eq-string", description="a == b")
def eq_string(a: str, b: str) -> bool:
    return a == b


@module("stdlib.compare.gt", description="a > b")
def gt(a: int, b: int) -> bool:
    return a > b


@module("stdlib.compare.lt", description="a < b")
def lt(a: int, b: int) -> bool:
    return a < b


@module("stdlib.compare.gte", description="a >= b")
def gte(a: int, b: int) -> bool:
    return a >= b


@module("stdlib.compare.lte", description="a <= b")
def lte(a: int, b: int) -> bool:
    return a <= b


# --- stdlib.convert, stdlib.debug, stdlib ------------------------------------------------

@module("stdlib.convert.to-string", description="decimal text of an Int")
def to_string(value: int) -> str:
    return str(value)


@module("stdlib.convert.to-int", description="a Float truncated toward zero")
def to_int(value: float) -> int:
    return int(value)


@module("stdlib.convert.to-float", description="an Int as a Float")
def to_float(value: int) -> float:
    return float(value)


@module("stdlib.identity", description="the value itself")
def identity(value: str) -> str:
    return value


@module("stdlib.debug.log", description="log the message (INFO) and pass it through")
def log(message: str) -> str:
    logger.info("%s", message)
    return message


STDLIB_MODULES: list[ModuleDefinition] = [
    add, subtract, multiply, divide, modulo, max_, min_, abs_, negate, round_,
    concat, string_length, join, split, contains, trim, replace,
    list_length, list_first, list_last, list_is_empty, list_sum, list_concat, list_contains,
    list_reverse, and_, or_, not_, eq_int, eq_string, gt, lt, gte, lte,
    to_string, to_int, to_float, identity, log,
]

HIGHER_ORDER = {
    "filter": "stdlib.collection.filter",
    "map": "stdlib.collection.map",
    "all": "stdlib.collection.all",
    "any": "stdlib.collection.any",
}
"""Functions that take a lambda; compiled to inline operations over the list."""
