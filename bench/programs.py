"""Generated constellation-lang programs for the compile benchmarks."""

from __future__ import annotations


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
