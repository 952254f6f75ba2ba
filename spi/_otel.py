"""OpenTelemetryTracer: the tracing SPI on opentelemetry-api.

Needs the ``otel`` extra: ``pip install 'constellation-engine[otel]'``. Configure the
SDK (exporters, sampling) as usual in your application; this adapter only creates spans
on the tracer it is given (or ``trace.get_tracer("constellation")``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["OpenTelemetryTracer"]


class _OtelSpan:
    __slots__ = ("_context", "_span")

    def __init__(self, span: Any) -> None:
        self._span = span
        self._context: Any = None  # the context of its children, built on first use

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def record_error(self, error: BaseException | str) -> None:
        from opentelemetry.trace import Status, StatusCode

        if isinstance(error, BaseException):
            self._span.record_exception(error)
        self._span.set_status(Status(StatusCode.ERROR, str(error)))

    def end(self, end_time_ns: int | None = None) -> None:
        self._span.end(end_time=end_time_ns)


class OpenTelemetryTracer:
    """A TracerProvider backed by OpenTelemetry.

    Args:
        tracer: an ``opentelemetry.trace.Tracer``; by default the global provider's
            tracer named ``"constellation"``.
    """

    def __init__(self, tracer: Any = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise ConfigurationError(
                "OpenTelemetry tracing needs opentelemetry-api: pip install "
                "'constellation-engine[otel]'", details={"field": "tracer"}) from None
        self._trace = trace
        self._tracer = tracer or trace.get_tracer("constellation")

    def start_span(self, name: str, attributes: Mapping[str, Any] | None = None,
                   parent: Any = None, start_time_ns: int | None = None) -> _OtelSpan:
        """Start a span, as a child of ``parent`` when given."""
        context = None
        if isinstance(parent, _OtelSpan):
            # One context per parent, not per child: an execution has a span per call.
            context = parent._context
            if context is None:
                context = parent._context = self._trace.set_span_in_context(parent._span)
        span = self._tracer.start_span(name, context=context,
                                       attributes=dict(attributes or {}),
                                       start_time=start_time_ns)
        return _OtelSpan(span)
