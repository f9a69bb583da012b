"""Structured logging: JSON lines in production, readable lines in a terminal.

Tracebacks never show local variables, in either form: a frame's locals hold secrets, tokens and
case details, and rendering them (rich's default in a terminal) blocked the event loop for seconds
per 500."""

import logging
import sys

import structlog
from structlog.tracebacks import ExceptionDictTransformer


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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
