"""Constellation: an embeddable, typed pipeline engine.

Register plain Python functions as modules, describe a pipeline (in Python with
:class:`PipelineBuilder`, or in constellation-lang), and run it as a parallel DAG::

    from constellation import Constellation, PipelineBuilder

    b = PipelineBuilder("shout")
    b.output("loud", b.call("Uppercase", text=b.input("text", str)))
    with Constellation() as engine:
        print(engine.run(b, {"text": "hi"}).outputs)   # {'loud': 'HI'}
"""

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from constellation._signals import install_signal_handlers
    from constellation.actors._context import CallContext
    from constellation.actors._handle import Execution
    from constellation.actors._resilience import CircuitBreakerConfig
    from constellation.core.builder import PipelineBuilder, Ref
    from constellation.core.dag import DagSpec
    from constellation.core.errors import (
        CircuitOpenError,
        CompilationError,
        ConfigurationError,
        ConstellationError,
        Diagnostic,
        ExecutionCancelledError,
        ExecutionTimeoutError,
        InputError,
        InputTypeError,
        MissingInputError,
        ModuleExecutionError,
        ModuleOutputTypeError,
        ModuleTimeoutError,
        NoCanaryError,
        PipelineConflictError,
        PipelineError,
        PipelineStoreError,
        QueueFullError,
        ResumeError,
        ShuttingDownError,
        UnknownHashError,
        UnknownInputError,
        UnknownModuleError,
        UnknownPipelineError,
        UnknownVersionError,
    )
    from constellation.core.modules import ModuleDefinition, module
    from constellation.core.options import CallOptions, Priority
    from constellation.core.results import ExecutionResult, ExecutionStatus, NodeRecord, NodeStatus
    from constellation.engine import Constellation, LifecycleState, Pipeline, SchedulerConfig
    from constellation.spi._backends import Backends


# Names are imported on first use (PEP 562): importing ``constellation.core.types`` or
# ``constellation.actors`` must not drag in the engine, and the engine imports the runtime, which
# imports ``constellation.core`` - an eager facade would be an import cycle.
_LAZY: dict[str, str] = {
    "Backends": "constellation.spi._backends",
    "CallContext": "constellation.actors._context",
    "CallOptions": "constellation.core.options",
    "CircuitBreakerConfig": "constellation.actors._resilience",
    "CircuitOpenError": "constellation.core.errors",
    "CompilationError": "constellation.core.errors",
    "ConfigurationError": "constellation.core.errors",
    "Constellation": "constellation.engine",
    "ConstellationError": "constellation.core.errors",
    "DagSpec": "constellation.core.dag",
    "Diagnostic": "constellation.core.errors",
    "Execution": "constellation.actors._handle",
    "ExecutionCancelledError": "constellation.core.errors",
    "ExecutionResult": "constellation.core.results",
    "ExecutionStatus": "constellation.core.results",
    "ExecutionTimeoutError": "constellation.core.errors",
    "InputError": "constellation.core.errors",
    "InputTypeError": "constellation.core.errors",
    "LifecycleState": "constellation.engine",
    "MissingInputError": "constellation.core.errors",
    "ModuleDefinition": "constellation.core.modules",
    "ModuleExecutionError": "constellation.core.errors",
    "ModuleOutputTypeError": "constellation.core.errors",
    "ModuleTimeoutError": "constellation.core.errors",
    "NoCanaryError": "constellation.core.errors",
    "NodeRecord": "constellation.core.results",
    "NodeStatus": "constellation.core.results",
    "Pipeline": "constellation.engine",
    "PipelineBuilder": "constellation.core.builder",
    "PipelineConflictError": "constellation.core.errors",
    "PipelineError": "constellation.core.errors",
    "PipelineStoreError": "constellation.core.errors",
    "Priority": "constellation.core.options",
    "QueueFullError": "constellation.core.errors",
    "Ref": "constellation.core.builder",
    "ResumeError": "constellation.core.errors",
    "SchedulerConfig": "constellation.engine",
    "ShuttingDownError": "constellation.core.errors",
    "UnknownHashError": "constellation.core.errors",
    "UnknownInputError": "constellation.core.errors",
    "UnknownModuleError": "constellation.core.errors",
    "UnknownPipelineError": "constellation.core.errors",
    "UnknownVersionError": "constellation.core.errors",
    "install_signal_handlers": "constellation._signals",
    "module": "constellation.core.modules",
}


# True only while the child process of an isolated call imports the module it must call:
# ``module`` is then the cheap decorator of ``constellation._child_module`` (see there).
_isolated_child = False


def __getattr__(name: str) -> Any:
    if name == "module" and _isolated_child:
        from constellation._child_module import module

        return module  # not cached: once the lookup is done, the real one is used
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'constellation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__version__ = "0.1.0"

logging.getLogger("constellation").addHandler(logging.NullHandler())

__all__ = [
    "Backends",
    "CallContext",
    "CallOptions",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "CompilationError",
    "ConfigurationError",
    "Constellation",
    "ConstellationError",
    "DagSpec",
    "Diagnostic",
    "Execution",
    "ExecutionCancelledError",
    "ExecutionResult",
    "ExecutionStatus",
    "ExecutionTimeoutError",
    "InputError",
    "InputTypeError",
    "LifecycleState",
    "MissingInputError",
    "ModuleDefinition",
    "ModuleExecutionError",
    "ModuleOutputTypeError",
    "ModuleTimeoutError",
    "NoCanaryError",
    "NodeRecord",
    "NodeStatus",
    "Pipeline",
    "PipelineBuilder",
    "PipelineConflictError",
    "PipelineError",
    "PipelineStoreError",
    "Priority",
    "QueueFullError",
    "Ref",
    "ResumeError",
    "SchedulerConfig",
    "ShuttingDownError",
    "UnknownHashError",
    "UnknownInputError",
    "UnknownModuleError",
    "UnknownPipelineError",
    "UnknownVersionError",
    "install_signal_handlers",
    "module",
]
