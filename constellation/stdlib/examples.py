"""Text and data modules used by the examples (the original engine's example library)."""

from __future__ import annotations

import re

from constellation.core.modules import module

__all__ = ["DATA_MODULES", "TEXT_MODULES"]


@module("Uppercase", description="Upper-case the text")
def uppercase(text: str) -> str:
    return text.upper()


@module("Lowercase", description="Lower-case the text")
def lowercase(text: str) -> str:
    return text.lower()


@module("Trim", description="Strip leading and trailing whitespace")
def trim(text: str) -> str:
    return text.strip()


@module("WordCount", description="Count words separated by whitespace")
def word_count(text: str) -> int:
    return len(text.split())


@module("TextLength", description="Number of characters")
def text_length(text: str) -> int:
    return len(text)


@module("SplitLines", description="Split on newlines")
def split_lines(text: str) -> list[str]:
    return text.split("\n")


@module("Split", description="Split on a regular expression")
def split(text: str, delimiter: str) -> list[str]:
    try:
        return re.split(delimiter, text)
    except re.error as exc:
        raise ValueError(f"invalid delimiter pattern {delimiter!r}: {exc}") from None


@module("Replace", description="Replace every occurrence of find with replace")
def replace(text: str, find: str, replace: str) -> str:
    return text.replace(find, replace)


@module("Contains", description="Whether the text contains the substring")
def contains(text: str, substring: str) -> bool:
    return substring in text


@module("SumList", description="Sum of the numbers")
def sum_list(numbers: list[int]) -> int:
    return sum(numbers)


@module("Max", description="Largest number (0 for an empty list)")
def max_(numbers: list[int]) -> int:
    return max(numbers, default=0)


@module("Min", description="Smallest number (0 for an empty list)")
def min_(numbers: list[int]) -> int:
    return min(numbers, default=0)


@module("Average", description="Mean of the numbers (0.0 for an empty list)")
def average(numbers: list[int]) -> float:
    return sum(numbers) / len(numbers) if numbers else 0.0


@module("FilterGreaterThan", description="Numbers greater than the threshold")
def filter_greater_than(numbers: list[int], threshold: int) -> list[int]:
    return [n for n in numbers if n > threshold]


@module("MultiplyEach", description="Each number times the multiplier")
def multiply_each(numbers: list[int], multiplier: int) -> list[int]:
    return [n * multiplier for n in numbers]


@module("Range", description="Integers from start to end, both included (empty when end "
                              "< start)")
def range_(start: int, end: int) -> list[int]:
    # Inclusive of end, as in the original: Range(1, 5) is [1, 2, 3, 4, 5].
    if end - start + 1 > 10_000_000:
        raise ValueError(f"Range({start}, {end}) is too large (more than 10,000,000 items)")
    return list(range(start, end + 1))


@module("FormatNumber", description="Format with thousands separators")
def format_number(number: int) -> str:
    return f"{number:,}"


TEXT_MODULES = [uppercase, lowercase, trim, word_count, text_length, split_lines, split,
                replace, contains]
DATA_MODULES = [sum_list, max_, min_, average, filter_greater_than, multiply_each, range_,
                format_number]
