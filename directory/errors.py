"""Errors raised by the directory package. HTTP-free: api/errors.py maps each `code` to a status."""

from typing import ClassVar


class DirectoryError(Exception):
    code: ClassVar[str] = "directory_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DirectoryError):
    """Missing, or outside the caller's scope: the two are deliberately indistinguishable."""

    code = "not_found"
