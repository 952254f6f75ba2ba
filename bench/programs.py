"""Generated constellation-lang programs for the compile benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def hundred_lines() -> str:
    """A realistic 100-line program: text and data steps, guards, branches, lambdas."""
    lines = ["use stdlib.collection", "use stdlib.compare", "use stdlib.math",
             "use stdlib.string as str", "", "in document: String", "in numbers: List<Int>",
             "in threshold: Int", "in flag: Boolean", ""]
    i = 0
    while len(lines) < 96:
        i += 1
        lines += [
            f"t{i} = Trim(document)",
            f"u{i} = Uppercase(t{i})",
            f"w{i} = WordCount(u{i})",
            f"k{i} = filter(numbers, (x) => gt(x, threshold + {i}))",
            f"m{i} = map(k{i}, (x) => multiply(x, {i}))",
            f"g{i} = (w{i} when flag) ?? {i}",
            f"b{i} = branch {{ gt(g{i}, {i}) -> \"big\", otherwise -> \"small\" }}",
            f"s{i} = \"${{b{i}}}-${{w{i}}}\"",
        ]
    lines += [f"out s{i}", f"out m{i}", "out u1", "out w1"]
    return "\n".join(lines) + "\n"


def thousand_nodes() -> str:
    """A generated program with 1,000 module calls (a wide, shallow graph)."""
    lines = ["in a: Int", "in b: Int"]
    lines += [f"v{i} = add(a, {i})" for i in range(500)]
    lines += [f"v{i} = multiply(v{i - 500}, b)" for i in range(500, 1000)]
    lines += [f"out v{i}" for i in range(500, 1000)]
    return "\n".join(lines) + "\n"


# --- compile scaling: programs of a given size (bench/test_bench_compile_scaling.py) ---

def _fill(header: list[str], line: Callable[[int], str], footer: Callable[[int], list[str]],
          size: int) -> str:
    lines = list(header)
    total = sum(len(x) + 1 for x in lines)
    i = 0
    while total < size:
        text = line(i)
        lines.append(text)
        total += len(text) + 1
        i += 1
    lines += footer(i)
    return "\n".join(lines) + "\n"


def assignments(size: int) -> str:
    """Plain assignments calling modules, about ``size`` bytes."""
    return _fill(["in a: Int"], lambda i: f"v{i} = add(a, {i})",
                 lambda n: [f"out v{n - 1}"], size)


def wide_match(size: int) -> str:
    """One union of many record variants, matched by one ``match`` with a case each."""
    n = max(size // 60, 2)
    lines = [f"type V{i} = {{f{i}: Int}}" for i in range(n)]
    lines.append("in s: " + " | ".join(f"V{i}" for i in range(n)))
    lines.append("x = match s {\n" + ",\n".join(f"  {{f{i}}} -> f{i} + {i}" for i in range(n))
                 + "\n}")
    lines.append("out x")
    return "\n".join(lines) + "\n"


def unknown_names(size: int) -> str:
    """Assignments of names that do not exist: as many errors as lines."""
    return _fill(["in a: Int"], lambda i: f"v{i} = a + missing{i}",
                 lambda n: ["out v0"], size)


def deep_parentheses(size: int) -> str:
    """One expression nested in parentheses, ``size`` bytes deep."""
    n = max(size // 2 - 20, 1)
    return "in a: Int\nx = " + "(" * n + "a" + ")" * n + "\nout x\n"


def long_chain(size: int) -> str:
    """One ``+`` chain of ``size`` bytes."""
    n = max(size // 4, 2)
    return "in a: Int\nx = " + " + ".join(["a"] * n) + "\nout x\n"


SCALING_SHAPES: dict[str, Callable[[int], str]] = {
    "assignments": assignments,
    "wide_match": wide_match,
    "unknown_names": unknown_names,
    "deep_parentheses": deep_parentheses,
    "long_chain": long_chain,
}
"""The programs the compile-scaling benchmark measures, by name."""
