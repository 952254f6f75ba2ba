"""The ``constellation`` command.

    constellation modules [--json]    list every registered module with its signature
    constellation version             print the version

Exit codes: 0 success, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="constellation", description="Constellation: an embeddable pipeline engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods = sub.add_parser("modules", help="list registered modules and their signatures")
    mods.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        from constellation import __version__

        print(__version__)
        return 0
    if args.command == "modules":
        return _modules(as_json=args.json)
    parser.print_help(sys.stderr)
    return 2


def _modules(*, as_json: bool) -> int:
    from constellation.core.types import render
    from constellation.stdlib import default_modules

    modules = sorted(default_modules(), key=lambda m: m.name)
    if as_json:
        print(json.dumps({"modules": [
            {"name": m.name, "version": m.version, "description": m.description,
             "inputs": {n: render(t) for n, t in m.inputs.items()},
             "output": render(m.output)} for m in modules]}, indent=2))
        return 0
    width = max(len(m.signature) for m in modules)
    for m in modules:
        print(f"{m.signature:<{width}}  {m.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
