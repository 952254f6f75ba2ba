"""An isolated module whose file uses its decorated functions as definitions at import
time (an engine, isinstance) and whose function runs an engine of its own in the child:
the child's stand-in for ``@module`` must be accepted wherever a definition is."""

from __future__ import annotations

import constellation
from constellation import Constellation, ModuleDefinition, PipelineBuilder, module


@module
def PlusOne(x: int) -> int:
    return x + 1


@constellation.module("ViaPackage", isolation="process")
def via_package(x: int) -> int:
    return x * 10


# Import-time code that reads the decorated objects as definitions.
DEFINED = sorted(v.name for v in list(globals().values()) if isinstance(v, ModuleDefinition))
with Constellation([PlusOne, via_package]) as _engine:  # registers at import
    pass


@module(isolation="process")
def Defined(x: int) -> str:
    """What the import-time code saw, as seen in the child."""
    return f"{x}: {DEFINED}"


@module(isolation="process")
def RunsAnEngine(x: int) -> int:
    """Runs a pipeline of a sibling module in an engine of its own, in the child."""
    b = PipelineBuilder("inner")
    b.output("y", b.call(PlusOne, x=b.input("x", int)))
    with Constellation([PlusOne]) as engine:
        result = engine.run(b, {"x": x}, timeout=60)
    return int(result.outputs["y"])
