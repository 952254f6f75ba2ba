"""DagSpec ↔ plain data: how a pipeline built in Python is stored and rebuilt.

``spec_to_data`` turns a DagSpec into JSON-ready data (lists, str-keyed dicts, str, int,
float, bool, None) that any store can keep (JSON, msgpack); ``spec_from_data`` rebuilds
an equal DagSpec, so its structural hash is the same. Values inside transforms and call
options keep their exact Python shape: tuples stay tuples, dict keys keep their types,
types and union values come back as ``CType`` and ``Tagged``. Every dict in the data is
one of the tagged forms below, so nothing a user wrote can be mistaken for one.
"""

from __future__ import annotations

from typing import Any

from constellation.core.dag import DagSpec, DataNode, ModuleNode, Transform
from constellation.core.options import CallOptions
from constellation.core.types import (
    BOOLEAN,
    FLOAT,
    INT,
    NOTHING,
    STRING,
    CHandled,
    CList,
    CMap,
    COptional,
    CRecord,
    CSeq,
    CType,
    CUnion,
    Tagged,
)

__all__ = ["FORMAT", "spec_from_data", "spec_to_data"]

FORMAT = 1
"""The version of the data layout; ``spec_from_data`` refuses another."""

_SCALARS: dict[str, CType] = {"String": STRING, "Int": INT, "Float": FLOAT,
                              "Boolean": BOOLEAN, "Nothing": NOTHING}
_SCALAR_NAMES = {type(t): n for n, t in _SCALARS.items()}


def _type(t: CType) -> Any:
    name = _SCALAR_NAMES.get(type(t))
    if name is not None:
        return name
    match t:
        case CList(e):
            return ["List", _type(e)]
        case CSeq(e):
            return ["Seq", _type(e)]
        case COptional(i):
            return ["Optional", _type(i)]
        case CMap(k, v):
            return ["Map", _type(k), _type(v)]
        case CRecord(fields):
            return ["Record", [[n, _type(ft)] for n, ft in fields]]
        case CUnion(members):
            return ["Union", [_type(m) for m in members]]
        case CHandled(name):
            return ["Handled", name]
    raise TypeError(f"cannot store the type {t!r}")


def _untype(data: Any) -> CType:
    if isinstance(data, str):
        if data not in _SCALARS:
            raise ValueError(f"unknown type {data!r}")
        return _SCALARS[data]
    if not isinstance(data, list) or not data:
        raise ValueError(f"not a stored type: {data!r}")
    kind, *args = data
    if kind == "List":
        return CList(_untype(args[0]))
    if kind == "Seq":
        return CSeq(_untype(args[0]))
    if kind == "Optional":
        return COptional(_untype(args[0]))
    if kind == "Map":
        return CMap(_untype(args[0]), _untype(args[1]))
    if kind == "Record":
        return CRecord(tuple((str(n), _untype(ft)) for n, ft in args[0]))
    if kind == "Union":
        return CUnion(tuple(_untype(m) for m in args[0]))
    if kind == "Handled":
        return CHandled(str(args[0]))  # its handler is looked up when values are checked
    raise ValueError(f"unknown type kind {kind!r}")


def _value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, tuple):
        return {"$": "tuple", "items": [_value(x) for x in v]}
    if isinstance(v, dict):
        return {"$": "dict", "items": [[_value(k), _value(x)] for k, x in v.items()]}
    if isinstance(v, CType):
        return {"$": "type", "type": _type(v)}
    if isinstance(v, Tagged):
        return {"$": "tagged", "tag": v.tag, "value": _value(v.value)}
    raise TypeError(f"cannot store a value of type {type(v).__name__} in a pipeline")


def _unvalue(data: Any) -> Any:
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [_unvalue(x) for x in data]
    if not isinstance(data, dict):
        raise ValueError(f"not a stored value: {type(data).__name__}")
    kind = data.get("$")
    if kind == "tuple":
        return tuple(_unvalue(x) for x in data["items"])
    if kind == "dict":
        return {_unvalue(k): _unvalue(x) for k, x in data["items"]}
    if kind == "type":
        return _untype(data["type"])
    if kind == "tagged":
        return Tagged(str(data["tag"]), _unvalue(data["value"]))
    raise ValueError(f"unknown stored value kind {kind!r}")


def spec_to_data(spec: DagSpec) -> dict[str, Any]:
    """The DagSpec as JSON-ready data.

    Raises:
        TypeError: a transform parameter or option value of a kind that cannot be stored.
    """
    return {
        "format": FORMAT,
        "name": spec.name,
        "description": spec.description,
        "timeout": spec.timeout,
        "inputs": [list(p) for p in spec.inputs],
        "outputs": [list(p) for p in spec.outputs],
        "data": [[d.id, d.name, None if d.ctype is None else _type(d.ctype),
                  None if d.transform is None else
                  [d.transform.op, _value(d.transform.params)], list(d.inputs)]
                 for d in spec.data],
        "modules": [[m.id, m.name, m.module, [list(a) for a in m.args], m.output,
                     _value(m.options.as_dict())] for m in spec.modules],
    }


def spec_from_data(data: Any) -> DagSpec:
    """Rebuild the DagSpec that :func:`spec_to_data` stored.

    Raises:
        ValueError: the data is not a stored DagSpec (or of another format).
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a stored pipeline of format {FORMAT}: "
                         f"{type(data).__name__}")
    try:
        timeout = data["timeout"]
        return DagSpec(
            name=str(data["name"]),
            inputs=tuple((str(n), str(d)) for n, d in data["inputs"]),
            data=tuple(DataNode(str(did), str(name), None if t is None else _untype(t),
                                None if tr is None else Transform(str(tr[0]),
                                                                  _unvalue(tr[1])),
                                tuple(str(i) for i in ins))
                       for did, name, t, tr, ins in data["data"]),
            modules=tuple(ModuleNode(str(mid), str(name), str(module),
                                     tuple((str(p), str(d)) for p, d in args), str(output),
                                     CallOptions(**_unvalue(options)))
                          for mid, name, module, args, output, options in data["modules"]),
            outputs=tuple((str(n), str(d)) for n, d in data["outputs"]),
            timeout=None if timeout is None else float(timeout),
            description=str(data["description"]),
        )
    except Exception as exc:  # a missing key, a wrong shape: the data is not a spec
        raise ValueError(f"not a stored pipeline: {type(exc).__name__}: {exc}") from exc
