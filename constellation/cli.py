"""The ``constellation`` command.

    constellation run FILE.cst [--input name=value ...] [--inputs inputs.json] [--timeout S]
    constellation check FILE.cst
    constellation modules [--json]
    constellation version

``run`` prints ``{"status": ..., "outputs": {...}}`` (plus ``errors`` when there are any)
as JSON. Exit codes: 0 completed, 1 the execution did not complete, 2 usage or compile
error. ``check`` prints each diagnostic as ``file:line:col: CODE message`` with the
source line and a caret, and exits 2 when there is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="constellation", description="Constellation: an embeddable pipeline engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run a .cst pipeline and print its outputs as JSON")
    run.add_argument("file", type=Path)
    run.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                     help="an input; the value is JSON unless the input is a String")
    run.add_argument("--inputs", type=Path, metavar="FILE.json",
                     help="a JSON object of inputs (--input values override it)")
    run.add_argument("--timeout", type=float, default=None, help="seconds")
    check = sub.add_parser("check", help="compile a .cst pipeline and print diagnostics")
    check.add_argument("file", type=Path)
    mods = sub.add_parser("modules", help="list modules and functions with their signatures")
    mods.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub.add_parser("version", help="print the version")
    serve = sub.add_parser(
        "serve", help="run the HTTP daemon (the 'http' extra); every option can also be "
                      "set as CONSTELLATION_<OPTION> in the environment")
    serve.add_argument("--host", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8080)")
    serve.add_argument("--pipelines-dir", metavar="DIR", help="compile DIR/*.cst at start")
    serve.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE",
                       help="import MODULE and register its @module functions (repeatable)")
    serve.add_argument("--storage", metavar="FILE|memory",
                       help="SQLite file for execution records (default "
                            "constellation-executions.sqlite)")
    serve.add_argument("--max-concurrency", type=int)
    serve.add_argument("--max-queue-size", type=int)
    serve.add_argument("--worker-threads", type=int)
    serve.add_argument("--default-timeout", type=float, metavar="SECONDS")
    serve.add_argument("--api-keys-file", metavar="FILE",
                       help="API keys and roles (also CONSTELLATION_API_KEYS=key:role,...)")
    serve.add_argument("--cors-origin", dest="cors_origins", action="append",
                       metavar="ORIGIN")
    serve.add_argument("--rate-limit-per-minute", type=float, metavar="N")
    serve.add_argument("--rate-limit-burst", type=int, metavar="N")
    serve.add_argument("--max-body-bytes", type=int, metavar="N")
    serve.add_argument("--drain-timeout", type=float, metavar="SECONDS")
    serve.add_argument("--compile-timeout", type=float, metavar="SECONDS",
                       help="stop a compile of request source after this long (default 10)")
    serve.add_argument("--compile-workers", type=int, metavar="N",
                       help="compile worker processes (default 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors exit 2 already
        return int(exc.code or 0)
    try:
        if args.command == "version":
            from constellation import __version__

            print(__version__)
            return EXIT_OK
        if args.command == "modules":
            return _modules(as_json=args.json)
        if args.command == "check":
            return _check(args.file)
        if args.command == "run":
            return _run(args.file, args.input, args.inputs, args.timeout)
        if args.command == "serve":
            return _serve(args)
    except _UsageError as exc:
        print(f"constellation: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _read(path: Path) -> str:
    from constellation.core.errors import CompilationError
    from constellation.lang.parser import decode_source

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return decode_source(data)
    except CompilationError as exc:  # not UTF-8: E109 at the first bad byte
        _print_diagnostics(path, exc.errors, sys.stderr)
        raise _UsageError(f"{path} is not UTF-8 text") from None


def _print_diagnostics(path: Path, diagnostics: Sequence[Any], stream: Any) -> None:
    for d in diagnostics:
        where = f"{path}:{d.line}:{d.column}" if d.line else str(path)
        kind = "" if d.severity == "error" else " (warning)"
        print(f"{where}: {d.code}{kind} {d.message}", file=stream)
        if d.snippet:
            print("    " + d.snippet.replace("\n", "\n    "), file=stream)


def _check(path: Path) -> int:
    from constellation.core.errors import CompilationError
    from constellation.engine import Constellation
    from constellation.lang.compiler import compile_source

    source = _read(path)
    with Constellation() as engine:
        try:
            compiled = compile_source(source, engine.modules, path.stem)
        except CompilationError as exc:
            _print_diagnostics(path, exc.errors, sys.stdout)
            return EXIT_USAGE
    _print_diagnostics(path, compiled.warnings, sys.stdout)
    n = len(compiled.spec.modules)
    print(f"{path}: ok ({n} module call{'s' if n != 1 else ''}, "
          f"{len(compiled.warnings)} warning{'s' if len(compiled.warnings) != 1 else ''})")
    return EXIT_OK


def _run(path: Path, pairs: list[str], inputs_file: Path | None, timeout: float | None
         ) -> int:
    from constellation.core.errors import CompilationError, ConstellationError
    from constellation.core.types import CString, from_json, to_json
    from constellation.engine import Constellation

    source = _read(path)
    raw: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            loaded = json.loads(_read(inputs_file))
        except json.JSONDecodeError as exc:
            raise _UsageError(f"{inputs_file} is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise _UsageError(f"{inputs_file} must hold a JSON object of inputs")
        raw.update(loaded)
    with Constellation() as engine:
        try:
            pipeline = engine.compile(source, name=path.stem)
        except CompilationError as exc:
            _print_diagnostics(path, exc.errors, sys.stderr)
            return EXIT_USAGE
        types = pipeline.inputs
        for pair in pairs:
            name, sep, text = pair.partition("=")
            if not sep:
                raise _UsageError(f"--input takes name=value, got {pair!r}")
            if name not in types:
                declared = ", ".join(types) or "none"
                raise _UsageError(f"{path} has no input {name!r} (it declares {declared})")
            if isinstance(types[name], CString):
                raw[name] = text
            else:
                try:
                    raw[name] = json.loads(text)
                except json.JSONDecodeError:
                    raise _UsageError(f"--input {name}: {text!r} is not a JSON value of "
                                      f"type {types[name]}") from None
        try:
            inputs = {n: from_json(types[n], v, f"input '{n}'") if n in types else v
                      for n, v in raw.items()}
            result = engine.run(pipeline, inputs, timeout=timeout)
        except ConstellationError as exc:
            print(f"constellation: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        out_types = pipeline.outputs
        body: dict[str, Any] = {
            "status": result.status.value,
            "outputs": {n: to_json(out_types[n], v) if out_types.get(n) else v  # type: ignore[arg-type]
                        for n, v in result.outputs.items()},
        }
        if result.errors:
            body["errors"] = [e.to_dict() for e in result.errors]
        if result.missing_inputs:
            body["missing_inputs"] = dict(result.missing_inputs)
    print(json.dumps(body, indent=2, default=str))
    return EXIT_OK if result.ok else EXIT_FAILED


def _serve(args: argparse.Namespace) -> int:
    from constellation.core.errors import ConfigurationError
    from constellation.http import INSTALL_HINT

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise _UsageError(INSTALL_HINT) from None
    from constellation.http.server import serve
    from constellation.http.settings import ServerSettings

    overrides = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = ServerSettings.from_env(overrides)
        return serve(settings)
    except ConfigurationError as exc:
        raise _UsageError(exc.message) from None


def _modules(*, as_json: bool) -> int:
    from constellation.core.types import render
    from constellation.stdlib import HIGHER_ORDER, default_modules

    modules = sorted(default_modules(), key=lambda m: m.name)
    functions = {short: f"{full}(items: List<T>, f: (T) => {_HOF_RESULT[short]})"
                 for short, full in HIGHER_ORDER.items()}
    if as_json:
        print(json.dumps({"modules": [
            {"name": m.name, "version": m.version, "description": m.description,
             "inputs": {n: render(t) for n, t in m.inputs.items()},
             "output": render(m.output)} for m in modules],
            "functions": [{"name": full, "signature": functions[short]}
                          for short, full in HIGHER_ORDER.items()]}, indent=2))
        return EXIT_OK
    width = max(len(m.signature) for m in modules)
    for m in modules:
        print(f"{m.signature:<{width}}  {m.description}")
    for sig in functions.values():
        print(f"{sig:<{width}}  inline, takes a lambda")
    return EXIT_OK


_HOF_RESULT = {"filter": "Boolean", "map": "U", "all": "Boolean", "any": "Boolean"}


if __name__ == "__main__":
    raise SystemExit(main())
