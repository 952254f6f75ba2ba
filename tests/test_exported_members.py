"""The public surface is exactly what ``__all__`` says, and all of it imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

import actors
import constellation
import spi

EXPECTED = {
    "Backends", "CallContext", "CallOptions", "CircuitBreakerConfig", "CircuitOpenError",
    "ModuleTimeoutError",
    "ResumeError", "install_signal_handlers",
    "CompilationError",
    "ConfigurationError", "Constellation", "ConstellationError", "DagSpec", "Diagnostic",
    "Execution", "ExecutionCancelledError", "ExecutionResult", "ExecutionStatus",
    "ExecutionTimeoutError", "InputError", "InputTypeError", "LifecycleState",
    "MissingInputError", "ModuleDefinition", "ModuleExecutionError", "ModuleOutputTypeError",
    "NodeRecord", "NodeStatus", "Pipeline", "PipelineBuilder", "Priority", "QueueFullError",
    "Ref", "SchedulerConfig", "ShuttingDownError", "UnknownInputError", "UnknownModuleError",
    "module",
}


def test_constellation_all_is_exactly_the_public_names() -> None:
    assert set(constellation.__all__) == EXPECTED
    assert constellation.__all__ == sorted(constellation.__all__)


def test_every_public_name_resolves() -> None:
    for package in (constellation, actors, spi):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        constellation.NoSuchThing  # noqa: B018


def test_importing_the_packages_in_any_order_works() -> None:
    for first in ("actors", "spi", "constellation.core.types", "constellation"):
        code = f"import {first}; import constellation; constellation.Constellation"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_core_import_needs_no_extras() -> None:
    code = ("import sys, constellation; constellation.Constellation; "
            "bad = [m for m in ('fastapi', 'redis', 'psycopg', 'prometheus_client', "
            "'opentelemetry', 'dask') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
