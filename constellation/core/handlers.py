"""Type handlers: Python types the language knows by name (``DateTime``, ``Decimal`` ...).

A handler gives a Python type a name in constellation-lang and says how to treat its
values at every boundary:

- ``check(value)`` -- is this a value of the type? (return it, possibly normalised;
  raise ``TypeError``/``ValueError`` if not): module inputs and outputs, pipeline
  inputs;
- ``to_json(value)`` / ``from_json(data)`` -- its JSON form: the HTTP API, the CLI,
  execution records, the cache (which all store JSON; SQLite and PostgreSQL then
  msgpack it);
- ``to_bytes`` / ``from_bytes`` -- a compact binary form for backends that store bytes
  (by default the UTF-8 JSON text);
- ``zero()`` -- the value ``on_error: skip`` uses.

Values keep their Python type inside an execution and across process pools and dask
(they are pickled there, as any argument). Handlers are tried in priority order (higher
first) when a Python type hint is read, so a handler for a subclass can stand before one
for its base (``datetime`` before ``date``).

Built in: ``DateTime`` (``datetime.datetime``, ISO 8601), ``Date`` (``datetime.date``),
``Bytes`` (``bytes``, base64), ``Decimal`` (``decimal.Decimal``, its string), ``UUID``
(``uuid.UUID``, its string) and ``Any`` (``typing.Any``: any value, in-process only --
it has no JSON form, so the daemon's JSON boundary refuses it with a clear error);
``Array`` (``numpy.ndarray``) and ``DataFrame`` (``pandas.DataFrame``) when those
packages are installed (JSON: dtype, shape and nested lists / pandas' ``split`` form with
dtypes; bytes: ``.npy`` / Parquet when pyarrow is installed, else pandas' ``table`` JSON --
never pickle).
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError, InputTypeError
from constellation.core.types import HANDLERS, SCALAR_TYPES, CHandled, CType

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TypeHandler", "handler_for", "handled_type", "list_type_handlers",
           "register_type_handler", "unregister_type_handler"]

_lock = threading.Lock()
_BY_PRIORITY: list[TypeHandler] = []


@dataclass(frozen=True)
class TypeHandler:
    """How the engine treats values of one Python type (see the module docstring).

    Attributes:
        name: the type's name in the language (``DateTime``); a capitalised identifier.
        python_type: the Python type (``datetime.datetime``).
        check: returns the value (normalised) or raises TypeError/ValueError.
        to_json: the value's JSON-ready form.
        from_json: the value from that form.
        to_bytes: the value as bytes (default: its JSON as UTF-8).
        from_bytes: the value from those bytes.
        zero: the zero value (default: None).
        priority: higher goes first when a type hint is matched.
        can_handle: whether a Python type hint is this type (default: the type itself).
        json_safe: False when the type has no JSON form (``Any``): the JSON boundary
            refuses it.
    """

    name: str
    python_type: Any
    check: Callable[[Any], Any]
    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]
    to_bytes: Callable[[Any], bytes] | None = None
    from_bytes: Callable[[bytes], Any] | None = None
    zero: Callable[[], Any] = field(default=lambda: None)
    priority: int = 0
    can_handle: Callable[[Any], bool] | None = None
    json_safe: bool = True

    def handles(self, hint: Any) -> bool:
        """Whether the Python type hint ``hint`` is this handler's type."""
        if self.can_handle is not None:
            return bool(self.can_handle(hint))
        return hint is self.python_type

    def encode(self, value: Any) -> bytes:
        """The value as bytes."""
        if self.to_bytes is not None:
            return self.to_bytes(value)
        return json.dumps(self.to_json(value), separators=(",", ":")).encode()

    def decode(self, data: bytes) -> Any:
        """The value from :meth:`encode`'s bytes."""
        if self.from_bytes is not None:
            return self.from_bytes(data)
        return self.from_json(json.loads(data.decode()))


def register_type_handler(handler: TypeHandler, *, replace: bool = False) -> CType:
    """Register ``handler``; returns its type (``CHandled(name)``).

    Raises:
        ConfigurationError: a bad name, a name taken by a built-in scalar, or a name
            already registered (unless ``replace``).
    """
    if not isinstance(handler, TypeHandler):
        raise ConfigurationError(f"register_type_handler takes a TypeHandler, got "
                                 f"{type(handler).__name__}", details={"field": "handler"})
    name = handler.name
    if not (isinstance(name, str) and name.isidentifier() and name[:1].isupper()):
        raise ConfigurationError(f"a type handler's name is a capitalised identifier "
                                 f"(DateTime), got {name!r}", details={"field": "name"})
    if name in SCALAR_TYPES or name in ("List", "Seq", "Map", "Optional", "Candidates",
                                        "Nothing"):
        raise ConfigurationError(f"type name {name} is built into the language",
                                 details={"field": "name"})
    with _lock:
        if name in HANDLERS and not replace:
            raise ConfigurationError(f"a type handler named {name} is registered already "
                                     "(pass replace=True to replace it)",
                                     details={"field": "name"})
        old = HANDLERS.get(name)
        if old is not None:
            _BY_PRIORITY.remove(old)
        HANDLERS[name] = handler
        _BY_PRIORITY.append(handler)
        _BY_PRIORITY.sort(key=lambda h: -h.priority)
    return CHandled(name)


def unregister_type_handler(name: str) -> bool:
    """Remove the handler named ``name``; False if there was none. Pipelines compiled
    with its type fail their value checks from then on (InputTypeError)."""
    with _lock:
        old = HANDLERS.pop(name, None)
        if old is None:
            return False
        _BY_PRIORITY.remove(old)
        return True


def list_type_handlers() -> list[TypeHandler]:
    """The registered handlers, highest priority first."""
    _load_optional()
    with _lock:
        return list(_BY_PRIORITY)


def handler_for(hint: Any) -> TypeHandler | None:
    """The first handler, by priority, whose type the Python hint ``hint`` is."""
    _load_optional(hint)
    for h in _BY_PRIORITY:
        try:
            if h.handles(hint):
                return h
        except Exception:  # a handler's can_handle that raises: not its type
            continue
    return None


def handled_type(name: str) -> CType | None:
    """The type named ``name`` in the language, if a handler has that name."""
    _load_optional(name=name)
    return CHandled(name) if name in HANDLERS else None


# --- the built-ins ---------------------------------------------------------------------------


def _exact(t: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if type(value) is not t:
            raise TypeError(f"not a {t.__name__}")
        return value
    return check


def _datetime_check(value: Any) -> Any:
    if not isinstance(value, _dt.datetime):
        raise TypeError("not a datetime")
    return value


def _from_iso_datetime(data: Any) -> _dt.datetime:
    if not isinstance(data, str):
        raise TypeError("an ISO 8601 string is expected")
    return _dt.datetime.fromisoformat(data)


def _from_iso_date(data: Any) -> _dt.date:
    if not isinstance(data, str):
        raise TypeError("an ISO 8601 date string is expected")
    return _dt.date.fromisoformat(data)


def _from_b64(data: Any) -> bytes:
    if not isinstance(data, str):
        raise TypeError("a base64 string is expected")
    return base64.b64decode(data.encode("ascii"), validate=True)


def _decimal_check(value: Any) -> Any:
    if type(value) is not decimal.Decimal:
        raise TypeError("not a Decimal")
    return value


def _from_decimal(data: Any) -> decimal.Decimal:
    if not isinstance(data, str | int):
        raise TypeError("a decimal string is expected (a float would lose digits)")
    try:
        return decimal.Decimal(data)
    except decimal.InvalidOperation:
        raise ValueError(f"{data!r} is not a decimal number") from None


def _from_uuid(data: Any) -> uuid.UUID:
    if not isinstance(data, str):
        raise TypeError("a UUID string is expected")
    return uuid.UUID(data)


def _no_json(value: Any) -> Any:
    raise InputTypeError("a value of type Any has no JSON form: it can only travel inside "
                         "one process (declare a concrete type for inputs and outputs "
                         "that cross the HTTP API, the CLI, records or the cache)",
                         details={"expected": "Any"})


def _builtins() -> list[TypeHandler]:
    return [
        TypeHandler("DateTime", _dt.datetime, _datetime_check, lambda v: v.isoformat(),
                    _from_iso_datetime, priority=10),
        TypeHandler("Date", _dt.date, _exact(_dt.date), lambda v: v.isoformat(),
                    _from_iso_date),
        TypeHandler("Bytes", bytes, _exact(bytes),
                    lambda v: base64.b64encode(v).decode("ascii"), _from_b64,
                    to_bytes=bytes, from_bytes=bytes, zero=lambda: b""),
        TypeHandler("Decimal", decimal.Decimal, _decimal_check, str, _from_decimal,
                    zero=lambda: decimal.Decimal(0)),
        TypeHandler("UUID", uuid.UUID, _exact(uuid.UUID), str, _from_uuid),
        TypeHandler("Any", Any, lambda v: v, _no_json, _no_json, priority=-100,
                    json_safe=False),
    ]


for _h in _builtins():
    register_type_handler(_h)

_optional_done: set[str] = set()


def _load_optional(hint: Any = None, name: str | None = None) -> None:
    """Register the numpy and pandas handlers the first time they may be needed: a hint
    from those packages, or their type names -- importing them only then."""
    module = getattr(hint, "__module__", "") or ""
    wanted = set()
    everything = hint is None and name is None
    if name == "Array" or module.startswith("numpy") or everything:
        wanted.add("numpy")
    if name == "DataFrame" or module.startswith("pandas") or everything:
        wanted.add("pandas")
    for package in wanted - _optional_done:
        _optional_done.add(package)
        try:
            from constellation.core import _handlers_data

            handler = _handlers_data.numpy_handler() if package == "numpy" \
                else _handlers_data.pandas_handler()
        except ImportError:
            continue
        if handler.name not in HANDLERS:
            register_type_handler(handler)
