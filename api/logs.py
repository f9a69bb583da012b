"""Structured logging: JSON lines in production, readable lines in a terminal.

structlog's own loggers and the standard library's (uvicorn, procrastinate, psycopg) go through the same
processors, so every line of a process has one format and carries the request id bound for the
request, or for the job and the request that queued it (api/jobs.py).

Tracebacks never show local variables, in either form: a frame's locals hold secrets, tokens and
case details, and rendering them (rich's default in a terminal) blocked the event loop for seconds
per 500."""

import logging
import sys
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(*, json: bool, level: int = logging.INFO) -> None:
    tail: list[structlog.types.Processor] = (
        [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
        if json
        else [
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
        ]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = _Stderr()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    root.handlers = [*(h for h in root.handlers if not isinstance(h, _Stderr)), handler]  # ours, once
    root.setLevel(level)
    # A line per job start and end, every minute for each periodic task: our tasks log what they did.
    logging.getLogger("procrastinate").setLevel(max(level, logging.WARNING))
    # httpx logs every request's full URL at INFO: a partner's webhook URL may hold its secret. Alembic
    # announces its plugins each time /readyz reads the migration head.
    for name in ("httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


# Paths that say where someone looked: a map tile's z/x/y (/v1/tiles/{z}/{x}/{y}.mvt). A log line shows
# their route's template instead, or the prefix alone when no route matched (a .png asked for, say),
# never the path itself. (No line ever shows a query string.)
PLACE_PATH_PREFIXES = ("/v1/tiles/",)


def logged_path(scope: Mapping[str, Any]) -> str:
    """What a log line may say of a request's path: the path, unless it says where someone looked."""
    path = str(scope.get("path", ""))
    prefix = next((prefix for prefix in PLACE_PATH_PREFIXES if path.startswith(prefix)), None)
    if prefix is None:
        return path
    template = getattr(scope.get("route"), "path", None)
    return template if isinstance(template, str) and template.startswith(prefix) else prefix + "…"
