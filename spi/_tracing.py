"""TracerProvider: spans around executions and module calls.

The engine reports ``execute(<pipeline>)`` with a child ``module(<name>)`` per module
call, and ``compile``. It creates spans from its listener actor after the fact, with
explicit start and end times (nanoseconds since the epoch), so ``start_span`` takes a
``start_time_ns`` and :meth:`Span.end` an ``end_time_ns``; ``span()`` is a convenience
context manager for your own code.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["NoOpSpan", "NoOpTracer", "Span", "TracerProvider", "span"]


@runtime_checkable
class Span(Protocol):
    """An open span."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Attach an attribute."""

    def record_error(self, error: BaseException | str) -> None:
        """Mark the span as failed."""

    def end(self, end_time_ns: int | None = None) -> None:
        """Finish the span (now, or at the given time)."""


@runtime_checkable
class TracerProvider(Protocol):
    """Creates spans."""

    def start_span(self, name: str, attributes: Mapping[str, Any] | None = None,
                   parent: Span | None = None, start_time_ns: int | None = None) -> Span:
        """Start a span.

        Args:
            name: ``execute(text-analysis)``, ``module(Uppercase)``, ``compile``.
            attributes: initial attributes.
            parent: the enclosing span.
            start_time_ns: when the work started (default: now).
        """


class NoOpSpan:
    """A span that records nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Do nothing."""

    def record_error(self, error: BaseException | str) -> None:
        """Do nothing."""

    def end(self, end_time_ns: int | None = None) -> None:
        """Do nothing."""


_NOOP_SPAN = NoOpSpan()


class NoOpTracer:
    """All operations are no-op. The default."""

    def start_span(self, name: str, attributes: Mapping[str, Any] | None = None,
                   parent: Span | None = None, start_time_ns: int | None = None) -> Span:
        """A span that records nothing."""
        return _NOOP_SPAN


@contextmanager
def span(tracer: TracerProvider, name: str, attributes: Mapping[str, Any] | None = None,
         parent: Span | None = None) -> Iterator[Span]:
    """Run a block inside a span of ``tracer``; an exception marks the span failed."""
    s = tracer.start_span(name, attributes, parent)
    try:
        yield s
    except BaseException as exc:
        s.record_error(exc)
        raise
    finally:
        s.end()
