"""The ``constellation`` command.

    constellation run FILE.cst [--input name=value ...] [--inputs inputs.json] [--timeout S]
                               [--progress] [--storage FILE] [--modules M ...] [-v | -q]
    constellation resume EXECUTION_ID --storage FILE [--input name=value ...]
    constellation check FILE.cst [--modules M ...]
    constellation modules [--json] [--modules M ...]
    constellation graph FILE.cst [--format mermaid|dot|svg|png] [-o FILE] [--transforms]
    constellation version | constellation --version

``run`` prints ``{"status": ..., "outputs": {...}}`` (plus ``errors`` when there are
any, and the ``execution_id`` with ``--storage``) as JSON. Exit codes: 0 completed, 1
the execution did not complete, 2 usage or compile error. ``--progress`` shows each node
as it starts, retries, finishes or fails, on standard error (a live table on a terminal
when ``rich`` is installed, plain lines otherwise); ``-v``/``-vv`` show the engine's
INFO/DEBUG log records and ``-q``/``-qq`` only its errors/nothing (the default shows its
warnings), also on standard error.
``check`` prints each diagnostic as ``file:line:col: CODE message`` with the source line
and a caret, and exits 2 when there is an error. ``graph`` prints (or writes with
``-o``) a picture of the pipeline: Mermaid or DOT text, or SVG/PNG drawn by Graphviz's
``dot`` when it is installed.

``FILE.cst`` may be ``-`` (standard input). ``--modules`` (repeatable) registers your own
``@module`` functions: a ``.py`` file, an importable module name, or ``ep:NAME`` (an
entry point of the group ``constellation.modules``). ``run --storage FILE`` keeps the
execution's record (and the pipeline) in a SQLite file, so that a run SUSPENDED for
missing inputs can be finished later with ``resume``. Output cut short by a closed pipe
(``constellation modules | head``) ends quietly with exit code 141.
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
EXIT_PIPE = 141  # as a process that SIGPIPE ended: its output was cut short


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="constellation", description="Constellation: an embeddable pipeline engine.")
    from constellation import __version__

    parser.add_argument("--version", action="version", version=f"constellation {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--modules", dest="module_sources", action="append", default=[],
                        metavar="FILE.py|MODULE|ep:NAME",
                        help="register the @module functions of a .py file, an importable "
                             "module or an entry point (repeatable)")
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (INFO; -vv: DEBUG) on standard error")
    common.add_argument("-q", "--quiet", action="count", default=0,
                        help="log less (errors only; -qq: nothing)")
    run = sub.add_parser("run", parents=[common],
                         help="run a .cst pipeline and print its outputs as JSON")
    run.add_argument("file", type=Path)
    run.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                     help="an input; the value is JSON unless the input is a String")
    run.add_argument("--inputs", type=Path, metavar="FILE.json",
                     help="a JSON object of inputs (--input values override it)")
    run.add_argument("--timeout", type=float, default=None, help="seconds")
    run.add_argument("--progress", action="store_true",
                     help="show each node's progress live on standard error")
    run.add_argument("--storage", type=Path, metavar="FILE",
                     help="keep the execution's record in this SQLite file (for resume)")
    resume = sub.add_parser("resume", parents=[common],
                            help="finish a suspended run recorded with run --storage")
    resume.add_argument("execution_id")
    resume.add_argument("--storage", type=Path, metavar="FILE", required=True)
    resume.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                        help="a missing input (JSON value; strings may be bare)")
    resume.add_argument("--timeout", type=float, default=None, help="seconds")
    check = sub.add_parser("check", parents=[common],
                           help="compile a .cst pipeline and print diagnostics")
    check.add_argument("file", type=Path)
    mods = sub.add_parser("modules", parents=[common],
                          help="list modules and functions with their signatures")
    mods.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub.add_parser("version", help="print the version")
    graph = sub.add_parser("graph", parents=[common],
                           help="draw a .cst pipeline's DAG (Mermaid, DOT, SVG, PNG)")
    graph.add_argument("file", type=Path)
    graph.add_argument("--format", choices=("mermaid", "dot", "svg", "png"),
                       default="mermaid", help="default: mermaid")
    graph.add_argument("-o", "--output", type=Path, metavar="FILE",
                       help="write here instead of standard output (required for png)")
    graph.add_argument("--transforms", action="store_true",
                       help="draw inline transforms as nodes instead of collapsing them")
    serve = sub.add_parser(
        "serve", help="run the HTTP daemon (the 'http' extra); every option can also be "
                      "set as CONSTELLATION_<OPTION> in the environment")
    serve.add_argument("-v", "--verbose", action="count", default=0,
                       help="log more (INFO; -vv: DEBUG) on standard error")
    serve.add_argument("-q", "--quiet", action="count", default=0,
                       help="log less (errors only; -qq: nothing)")
    serve.add_argument("--host", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8080)")
    serve.add_argument("--pipelines-dir", metavar="DIR",
                       help="compile DIR/*.cst at start, each a version of its file stem")
    serve.add_argument("--watch", action="store_true", default=None,
                       help="reload a file of --pipelines-dir when it changes")
    serve.add_argument("--watch-interval", type=float, metavar="SECONDS",
                       help="how often --watch looks at the files (default 1)")
    serve.add_argument("--executor", metavar="threads[:N]|process[:N]|tcp://HOST:PORT",
                       help="where module code runs (default: the daemon's own threads); "
                            "see docs/distributed.md")
    serve.add_argument("--no-dashboard", dest="dashboard", action="store_false", default=None,
                       help="do not serve the dashboard page at /dashboard")
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
    serve.add_argument("--forwarded-allow-ips", metavar="IPS",
                       help="comma-separated proxy addresses whose X-Forwarded-For is "
                            "believed ('*': any); default none")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors exit 2 already
        return int(exc.code or 0)
    restore = _configure_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0)) \
        if hasattr(args, "verbose") else None
    try:
        return _dispatch(parser, args)
    finally:
        if restore is not None:
            restore()


def _configure_logging(verbosity: int) -> Any:
    """Send the engine's log records to standard error at the level ``-v``/``-q`` chose;
    returns what undoes it (main() may run more than once in a process: tests)."""
    import logging

    level = {-2: logging.CRITICAL + 10, -1: logging.ERROR, 0: logging.WARNING,
             1: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 1 else
                                  logging.CRITICAL + 10)
    lg = logging.getLogger("constellation")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = lg.level
    lg.addHandler(handler)
    lg.setLevel(level)

    def restore() -> None:
        lg.removeHandler(handler)
        lg.setLevel(saved)

    return restore


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        return _command(parser, args)
    except _UsageError as exc:
        print(f"constellation: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (``constellation modules | head``): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "version":
        from constellation import __version__

        print(__version__)
        return EXIT_OK
    if args.command == "serve":
        return _serve(args)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    modules = _user_modules(args.module_sources)
    if args.command == "modules":
        return _modules(as_json=args.json, extra=modules)
    if args.command == "check":
        return _check(args.file, modules)
    if args.command == "graph":
        return _graph(args.file, args.format, args.output, transforms=args.transforms,
                      modules=modules)
    if args.command == "run":
        return _run(args.file, args.input, args.inputs, args.timeout,
                    progress=args.progress, modules=modules, storage=args.storage)
    if args.command == "resume":
        return _resume(args.execution_id, args.input, args.storage, args.timeout, modules)
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _user_modules(sources: list[str]) -> list[Any]:
    from constellation._loading import load_modules
    from constellation.core.errors import ConfigurationError

    try:
        return load_modules(sources)
    except ConfigurationError as exc:
        raise _UsageError(exc.message) from None


def _name(path: Path) -> str:
    return "stdin" if str(path) == "-" else path.stem


def _read(path: Path) -> str:
    from constellation.core.errors import CompilationError
    from constellation.lang.parser import decode_source

    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
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


def _check(path: Path, modules: list[Any]) -> int:
    from constellation.core.errors import CompilationError
    from constellation.engine import Constellation
    from constellation.lang.compiler import compile_source

    source = _read(path)
    with Constellation(modules) as engine:
        try:
            compiled = compile_source(source, engine.modules, _name(path))
        except CompilationError as exc:
            _print_diagnostics(path, exc.errors, sys.stdout)
            return EXIT_USAGE
    _print_diagnostics(path, compiled.warnings, sys.stdout)
    n = len(compiled.spec.modules)
    print(f"{path}: ok ({n} module call{'s' if n != 1 else ''}, "
          f"{len(compiled.warnings)} warning{'s' if len(compiled.warnings) != 1 else ''})")
    return EXIT_OK


def _graph(path: Path, fmt: str, output: Path | None, *, transforms: bool,
           modules: list[Any]) -> int:
    from constellation.core.errors import CompilationError, ConfigurationError
    from constellation.core.graph import render_graphviz
    from constellation.engine import Constellation

    if fmt == "png" and output is None:
        raise _UsageError("--format png writes binary data: give -o FILE.png")
    source = _read(path)
    with Constellation(modules) as engine:
        try:
            pipeline = engine.compile(source, name=_name(path))
        except CompilationError as exc:
            _print_diagnostics(path, exc.errors, sys.stderr)
            return EXIT_USAGE
    text = pipeline.to_mermaid(transforms=transforms) if fmt == "mermaid" \
        else pipeline.to_dot(transforms=transforms)
    data: bytes
    if fmt in ("svg", "png"):
        try:
            data = render_graphviz(text, fmt)
        except ConfigurationError as exc:
            raise _UsageError(exc.message) from None
    else:
        data = text.encode()
    if output is None:
        sys.stdout.write(data.decode())
        return EXIT_OK
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise _UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    return EXIT_OK


def _parse_pairs(pairs: list[str], types: Any, where: str) -> dict[str, Any]:
    from constellation.core.types import CString

    raw: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise _UsageError(f"--input takes name=value, got {pair!r}")
        if name not in types:
            declared = ", ".join(types) or "none"
            raise _UsageError(f"{where} has no input {name!r} (it declares {declared})")
        if isinstance(types[name], CString):
            raw[name] = text
        else:
            try:
                raw[name] = json.loads(text)
            except json.JSONDecodeError:
                raise _UsageError(f"--input {name}: {text!r} is not a JSON value of type "
                                  f"{types[name]}") from None
    return raw


def _body(pipeline: Any, result: Any, *, with_id: bool) -> dict[str, Any]:
    from constellation.core.types import to_json

    out_types = pipeline.outputs
    body: dict[str, Any] = {"execution_id": result.execution_id} if with_id else {}
    body |= {
        "status": result.status.value,
        "outputs": {n: to_json(out_types[n], v) if out_types.get(n) else v
                    for n, v in result.outputs.items()},
    }
    if result.errors:
        body["errors"] = [e.to_dict() for e in result.errors]
    if result.missing_inputs:
        body["missing_inputs"] = dict(result.missing_inputs)
    return body


def _backends(storage: Path | None, listener: Any) -> Any:
    from constellation.spi._backends import Backends

    if storage is None and listener is None:
        return None
    if storage is None:
        return Backends(listener=listener)
    from constellation.core.errors import ConstellationError
    from constellation.spi import SqliteExecutionStorage, SqlitePipelineStore

    try:
        return Backends(storage=SqliteExecutionStorage(str(storage)),
                        pipelines=SqlitePipelineStore(str(storage)), listener=listener)
    except ConstellationError as exc:
        raise _UsageError(f"--storage {storage}: {exc.message}") from None


def _run(path: Path, pairs: list[str], inputs_file: Path | None, timeout: float | None,
         *, progress: bool = False, modules: list[Any] | None = None,
         storage: Path | None = None) -> int:
    from constellation.core.errors import CompilationError, ConstellationError
    from constellation.core.types import from_json
    from constellation.engine import Constellation
    from constellation.progress import progress_listener

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
    shown = progress_listener() if progress else None
    try:
        with Constellation(modules or [], backends=_backends(storage, shown)) as engine:
            try:
                pipeline = engine.compile(source, name=_name(path))
            except CompilationError as exc:
                _print_diagnostics(path, exc.errors, sys.stderr)
                return EXIT_USAGE
            types = pipeline.inputs
            raw.update(_parse_pairs(pairs, types, str(path)))
            try:
                inputs = {n: from_json(types[n], v, f"input '{n}'") if n in types else v
                          for n, v in raw.items()}
                result = engine.run(pipeline, inputs, timeout=timeout)
            except ConstellationError as exc:
                print(f"constellation: {exc.message}", file=sys.stderr)
                return EXIT_USAGE
            body = _body(pipeline, result, with_id=storage is not None)
        # Leaving the engine delivered every event: the display is complete.
    finally:
        if shown is not None:
            shown.close()
    print(json.dumps(body, indent=2, default=str))
    return EXIT_OK if result.ok else EXIT_FAILED


def _resume(execution_id: str, pairs: list[str], storage: Path, timeout: float | None,
            modules: list[Any]) -> int:
    from constellation.core.errors import ConstellationError
    from constellation.core.types import from_json
    from constellation.engine import Constellation

    if not storage.is_file():
        raise _UsageError(f"--storage {storage}: no such file (record runs with "
                          "run --storage FILE)")
    backends = _backends(storage, None)
    with Constellation(modules, backends=backends) as engine:
        try:
            record = backends.storage.load(execution_id)
        except ConstellationError as exc:
            raise _UsageError(exc.message) from None
        if record is None:
            raise _UsageError(f"no execution {execution_id} in {storage}")
        try:
            pipeline = engine.pipelines.get(record.structural_hash)
        except ConstellationError as exc:
            raise _UsageError(f"the pipeline of execution {execution_id} cannot be rebuilt: "
                              f"{exc.message} (give the modules it uses with --modules)"
                              ) from None
        types = pipeline.inputs
        raw = _parse_pairs(pairs, types, f"execution {execution_id}")
        try:
            inputs = {n: from_json(types[n], v, f"input '{n}'") for n, v in raw.items()}
            result = engine.resume(execution_id, inputs, pipeline=pipeline,
                                   timeout=timeout).result()
        except ConstellationError as exc:
            print(f"constellation: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        body = _body(pipeline, result, with_id=True)
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

    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "verbose", "quiet")}
    try:
        settings = ServerSettings.from_env(overrides)
        return serve(settings)
    except ConfigurationError as exc:
        raise _UsageError(exc.message) from None


def _modules(*, as_json: bool, extra: list[Any] | None = None) -> int:
    from constellation.core.types import render
    from constellation.stdlib import HIGHER_ORDER, default_modules

    modules = sorted([*default_modules(), *(extra or [])], key=lambda m: m.name)
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
