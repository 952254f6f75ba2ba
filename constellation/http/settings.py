"""ServerSettings: everything ``constellation serve`` can be told, from the command line
or from ``CONSTELLATION_*`` environment variables (the command line wins)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from constellation.core.errors import ConfigurationError

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """Settings of the HTTP daemon. Protection is off unless configured.

    Attributes:
        host: interface to listen on (``CONSTELLATION_HOST``).
        port: TCP port (``CONSTELLATION_PORT``).
        pipelines_dir: ``*.cst`` files compiled at start, named by file stem, each
            saved as a version of its name (``CONSTELLATION_PIPELINES_DIR``).
        watch: reload a file of ``pipelines_dir`` when it changes (``CONSTELLATION_WATCH``).
        watch_interval: seconds between two looks at ``pipelines_dir`` (0.1-3600)
            (``CONSTELLATION_WATCH_INTERVAL``).
        plugins: importable Python modules whose ``@module`` definitions are registered
            (``CONSTELLATION_PLUGINS``, comma-separated).
        storage: a SQLite file for execution records and stored pipelines (versions,
            aliases, canaries), or ``memory`` (``CONSTELLATION_STORAGE``).
        max_concurrency: executions running at once (``CONSTELLATION_MAX_CONCURRENCY``).
        max_queue_size: executions waiting (``CONSTELLATION_MAX_QUEUE_SIZE``).
        worker_threads: threads running module code (``CONSTELLATION_WORKER_THREADS``).
        default_timeout: seconds per execution at most (``CONSTELLATION_DEFAULT_TIMEOUT``).
        api_keys_file: keys and roles (``CONSTELLATION_API_KEYS_FILE``); keys are also
            read from ``CONSTELLATION_API_KEYS`` (``key:role,...``). No keys: no auth.
        cors_origins: origins allowed by CORS (``CONSTELLATION_CORS_ORIGINS``).
        rate_limit_per_minute: requests per minute per client, 0 = off
            (``CONSTELLATION_RATE_LIMIT_PER_MINUTE``).
        rate_limit_burst: burst per client (``CONSTELLATION_RATE_LIMIT_BURST``).
        max_body_bytes: largest request body (``CONSTELLATION_MAX_BODY_BYTES``).
        drain_timeout: seconds to let executions finish on SIGTERM
            (``CONSTELLATION_DRAIN_TIMEOUT``).
        compile_timeout: seconds a compile of request source may take (waiting for a
            compile worker included); past it the compile is killed and the request
            answered 400 E609 (``CONSTELLATION_COMPILE_TIMEOUT``).
        compile_workers: compile worker processes, i.e. compiles of request source
            running at once (``CONSTELLATION_COMPILE_WORKERS``).
        executor: where module code runs: ``threads[:N]`` (the default, the engine's own
            threads), ``process[:N]`` (a process pool the daemon owns) or a dask
            scheduler address ``tcp://host:port`` (``CONSTELLATION_EXECUTOR``); see
            docs/distributed.md.
        dashboard: serve the dashboard page at ``/dashboard``
            (``CONSTELLATION_DASHBOARD``; ``--no-dashboard`` turns it off).
        forwarded_allow_ips: addresses of the proxies whose ``X-Forwarded-For`` and
            ``X-Forwarded-Proto`` headers are believed (the client address then comes from
            them, for the rate limit and the logs); ``*`` trusts any. None by default:
            the headers are ignored (``CONSTELLATION_FORWARDED_ALLOW_IPS``,
            comma-separated).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    pipelines_dir: str | None = None
    watch: bool = False
    watch_interval: float = 1.0
    plugins: tuple[str, ...] = ()
    storage: str = "constellation-executions.sqlite"
    max_concurrency: int = 16
    max_queue_size: int = 1000
    worker_threads: int = 32
    default_timeout: float = 300.0
    api_keys_file: str | None = None
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_minute: float = 0.0
    rate_limit_burst: int = 20
    max_body_bytes: int = 1_048_576
    drain_timeout: float = 30.0
    compile_timeout: float = 10.0
    compile_workers: int = 2
    executor: str | None = None
    dashboard: bool = True
    forwarded_allow_ips: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, overrides: dict[str, Any] | None = None,
                 environ: dict[str, str] | None = None) -> ServerSettings:
        """Settings from ``CONSTELLATION_<FIELD>`` variables, then ``overrides``
        (values that are None are ignored).

        Raises:
            ConfigurationError: a value that does not parse, naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = f"CONSTELLATION_{f.name.upper()}"
            if var in env and env[var] != "":
                values[f.name] = _parse(var, env[var], f.default)
        tuples = {f.name for f in fields(cls) if isinstance(f.default, tuple)}
        for k, v in (overrides or {}).items():
            if v is not None and v != ():
                if isinstance(v, str) and k in tuples:  # "a,b" on the command line
                    v = _parse(k, v, ())
                values[k] = tuple(v) if isinstance(v, list) else v
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raises ConfigurationError for out-of-range values."""
        def bad(name: str, why: str) -> ConfigurationError:
            return ConfigurationError(f"{name}: {why}", details={"field": name})

        if not 0 <= self.port <= 65535:
            raise bad("port", f"must be 0-65535, got {self.port}")
        for name in ("max_concurrency", "worker_threads", "max_queue_size",
                     "rate_limit_burst", "max_body_bytes", "compile_workers"):
            if getattr(self, name) < 1:
                raise bad(name, f"must be at least 1, got {getattr(self, name)}")
        for name in ("default_timeout", "drain_timeout", "compile_timeout"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be a positive number of seconds")
        if not 0.1 <= self.watch_interval <= 3600:
            raise bad("watch_interval", "must be from 0.1 to 3600 seconds")
        if self.watch and not self.pipelines_dir:
            raise bad("watch", "needs pipelines_dir (--pipelines-dir)")
        if self.executor is not None:
            from constellation.executors import parse_executor

            parse_executor(self.executor)  # a ConfigurationError naming the field
        if self.rate_limit_per_minute < 0:
            raise bad("rate_limit_per_minute", "must be 0 (off) or positive")


def _parse(var: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, tuple):
            return tuple(p.strip() for p in text.split(",") if p.strip())
        if isinstance(default, bool):
            return text.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ConfigurationError(f"{var}={text!r} is not a valid value",
                                 details={"field": var}) from None
    return text
