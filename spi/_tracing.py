"""TracerProvider: spans around executions and module calls.

``span(name, attributes)`` is a context manager yielding a :class:`Span`; the engine
opens ``execute(<pipeline>)`` with a child ``module(<name>)`` per module call, and
``compile``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["NoOpSpan", "NoOpTracer", "Span", "TracerProvider"]


@runtime_checkable
class Span(Protocol):
    """An open span."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Attach an attribute."""

    def record_error(self, error: BaseException) -> None:
        """Mark the span as failed with ``error``."""


@runtime_checkable
class TracerProvider(Protocol):
    """Creates spans."""

    def span(self, name: str, attributes: Mapping[str, Any] | None = None,
             parent: Span | None = None) -> Any:
        """A context manager around the work, yielding a :class:`Span`.

        Args:
            name: ``execute(text-analysis)``, ``module(Uppercase)``, ``compile``.
            attributes: initial attributes.
            parent: the enclosing span, when the work runs on another thread.
        """


class NoOpSpan:
    """A span that records nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Do nothing."""

    def record_error(self, error: BaseException) -> None:
        """Do nothing."""


_NOOP_SPAN = NoOpSpan()


class NoOpTracer:
    """All operations are no-op. The default."""

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None,
             parent: Span | None = None) -> Iterator[Span]:
        """Yield a span that records nothing."""
        yield _NOOP_SPAN
