"""``install_signal_handlers``: drain an engine on SIGTERM/SIGINT (for daemons)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from constellation.core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from constellation.engine import Constellation

__all__ = ["install_signal_handlers"]

logger = logging.getLogger("constellation.engine")


def install_signal_handlers(
    engine: Constellation,
    *,
    drain_timeout: float = 30.0,
    signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
    on_stopped: Callable[[bool], None] | None = None,
) -> Callable[[], None]:
    """Drain ``engine`` when the process receives SIGTERM or SIGINT.

    The first signal starts ``engine.shutdown(drain_timeout)`` on a background thread:
    the engine turns DRAINING at once (new submissions get ``ShuttingDownError``,
    readiness checks can report it), in-flight executions finish, those still running
    after ``drain_timeout`` are cancelled. A second signal cancels everything still
    running at once. ``on_stopped(drained)`` is called once the engine has STOPPED
    (a daemon exits there).

    Must be called from the main thread (Python delivers signals only there).

    Returns:
        A function that puts the previous handlers back.

    Raises:
        ConfigurationError: not called from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError("install_signal_handlers must be called from the main "
                                 "thread", details={"field": "signals"})
    previous: dict[int, Any] = {}
    started = threading.Event()

    def drain() -> None:
        drained = engine.shutdown(drain_timeout)
        if on_stopped is not None:
            try:
                on_stopped(drained)
            except Exception:
                logger.exception("on_stopped callback failed")

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not started.is_set():
            started.set()
            logger.info("%s: draining (up to %s s)", name, drain_timeout)
            threading.Thread(target=drain, name="constellation-drain", daemon=True).start()
        else:
            logger.warning("%s again: cancelling every execution now", name)
            engine.cancel_all()

    for sig in signals:
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
