"""Errors raised by the sync package. HTTP-free: api/errors.py maps each `code` to a status."""

from typing import ClassVar


class SyncError(Exception):
    code: ClassVar[str] = "sync_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidWebhookUrl(SyncError):
    """An endpoint we must not call: not https, or resolving to a private, loopback or link-local address."""

    code = "invalid_request"

    def __init__(self, detail: str) -> None:
        super().__init__(f"url: {detail}")
        self.field = "url"
        self.message = detail
