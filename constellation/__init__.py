"""Constellation: an embeddable, typed pipeline engine.

Register plain Python functions as modules, describe a pipeline (in Python with
:class:`PipelineBuilder`, or in constellation-lang), and run it as a parallel DAG::

    from constellation import Constellation, PipelineBuilder

    b = PipelineBuilder("shout")
    b.output("loud", b.call("Uppercase", text=b.input("text", str)))
    with Constellation() as engine:
        print(engine.run(b, {"text": "hi"}).outputs)   # {'loud': 'HI'}
"""

import logging

from actors._context import CallContext
from actors._handle import Execution
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
    QueueFullError,
    ShuttingDownError,
    UnknownInputError,
    UnknownModuleError,
)
from constellation.core.modules import ModuleDefinition, module
from constellation.core.options import CallOptions, Priority
from constellation.core.results import ExecutionResult, ExecutionStatus, NodeRecord, NodeStatus
from constellation.engine import Constellation, LifecycleState, Pipeline, SchedulerConfig
from spi._backends import Backends

__version__ = "0.1.0"

logging.getLogger("constellation").addHandler(logging.NullHandler())

__all__ = [
    "Backends",
    "CallContext",
    "CallOptions",
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
    "NodeRecord",
    "NodeStatus",
    "Pipeline",
    "PipelineBuilder",
    "Priority",
    "QueueFullError",
    "Ref",
    "SchedulerConfig",
    "ShuttingDownError",
    "UnknownInputError",
    "UnknownModuleError",
    "module",
]
