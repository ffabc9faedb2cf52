"""Errors of the CPO back-office link. The link catches them itself (it never raises into the
daemon); they reach callers of the low-level transports and show in ``CpoSnapshot.last_error``.
"""

from typing import Any

from controller.errors import GridwardenError


class CpoError(GridwardenError):
    """Base of every CPO link error."""


class CpoUnreachable(CpoError, ConnectionError):  # noqa: N818 (domain names)
    """No usable answer: connection refused, TLS failure, timeout, or a 5xx/429. Retryable."""


class CpoServerError(CpoUnreachable):
    """The CPO answered with a server-side error status (5xx, 429): retryable."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


class CpoRejected(CpoError):  # noqa: N818 (domain names)
    """The CPO refused the request (4xx with the common error body). Not retried as is."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.details = details or {}


class CpoAuthError(CpoRejected):
    """401/403: the token is wrong, expired or revoked (an operator must act)."""


class CpoBadResponse(CpoError, ValueError):  # noqa: N818 (domain names)
    """The CPO answered, but not as the API says (not JSON, wrong shape, wrong site)."""
