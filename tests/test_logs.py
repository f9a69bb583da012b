"""Logged tracebacks carry no local variables: a frame's locals hold secrets and case details."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import structlog

from api.logs import configure_logging


@pytest.mark.parametrize("json", [True, False])
def test_a_logged_exception_shows_no_local_values(json: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(json=json, level=logging.INFO)
    try:

        def fail() -> None:
            client_secret = "s3cr3t-value-never-logged"  # noqa: F841 - the local a renderer could show
            raise RuntimeError("boom")

        fail()
    except RuntimeError:
        structlog.get_logger().exception("unexpected")
    finally:
        structlog.reset_defaults()
    output = stream.getvalue()
    assert "boom" in output
    assert "RuntimeError" in output
    assert "s3cr3t-value-never-logged" not in output


def test_the_standard_librarys_records_are_json_lines_with_the_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's and procrastinate's lines come out like ours: one format per process, with the id of the
    request (or job) they belong to."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(json=True, level=logging.INFO)
    try:
        with structlog.contextvars.bound_contextvars(request_id="req-0123456789"):
            logging.getLogger("procrastinate.worker").warning("job %s stalled", 42)
        logging.getLogger("procrastinate.worker").info("a job started")  # below the library's threshold
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "job 42 stalled"
    assert lines[0]["request_id"] == "req-0123456789"
    assert lines[0]["logger"] == "procrastinate.worker"
    assert lines[0]["level"] == "warning"
