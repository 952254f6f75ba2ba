"""Modules over Python-native types, at module level (process pools import them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from constellation import module
from constellation.core.handlers import TypeHandler, register_type_handler


class Point:
    """A user type that is not a dataclass or a dict: it needs a handler."""

    __slots__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


def _point_check(value: object) -> Point:
    if type(value) is not Point:
        raise TypeError("not a Point")
    return value


def _point_from_json(data: object) -> Point:
    if not (isinstance(data, list) and len(data) == 2 and all(type(v) is int for v in data)):
        raise ValueError("a [x, y] pair of integers is expected")
    return Point(data[0], data[1])


POINT = register_type_handler(
    TypeHandler("Point", Point, _point_check, lambda p: [p.x, p.y], _point_from_json),
    replace=True)

calls = {"n": 0}


@module("typed.NextDay")
def next_day(when: dt.datetime) -> dt.datetime:
    calls["n"] += 1
    return when + dt.timedelta(days=1)


@module("typed.Move")
def move(p: Point, by: int) -> Point:
    return Point(p.x + by, p.y - by)


@module("typed.Wrong")
def wrong(p: Point) -> Point:
    return (p.x, p.y)  # type: ignore[return-value]  # a tuple, not a Point


@dataclass
class Stamp:
    at: dt.datetime
    note: str


@module("typed.Stamped")
def stamped(when: dt.datetime, note: str) -> Stamp:
    return Stamp(when, note)
