"""Logged tracebacks carry no local variables: a frame's locals hold secrets and case details."""

from __future__ import annotations

import io
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
