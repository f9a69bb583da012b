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


class NotWorking(DirectoryError):
    """The caller may read the record but is not one of the people working it (need-to-know)."""

    code = "not_working_this_case"


class PreconditionRequired(DirectoryError):
    """A write on a shared record without the version the caller read (no If-Match)."""

    code = "precondition_required"


class StaleVersion(DirectoryError):
    """The row changed since the version the caller read (If-Match no longer matches)."""

    code = "stale_version"


class InvalidInput(DirectoryError):
    """Input that is well-formed but contradicts the data (a point outside France, an unknown code, a
    closed case…). `field` names the body member at fault; api/errors.py turns it into a JSON pointer.
    The detail never echoes the value."""

    code = "invalid_request"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.message = detail


class Conflict(DirectoryError):
    """The request is well-formed but the record's current state forbids it (a revoked client…)."""

    code = "conflict"


class InvalidTransition(DirectoryError):
    """A handoff move the state machine (or the caller's side of it) does not allow from here."""

    code = "invalid_transition"

    def __init__(self, detail: str, *, current: str, allowed: list[str]) -> None:
        super().__init__(detail)
        self.extra = {"current_status": current, "allowed": allowed}


class IdempotencyConflict(DirectoryError):
    """The Idempotency-Key was already used for a different request."""

    code = "idempotency_key_reused"
