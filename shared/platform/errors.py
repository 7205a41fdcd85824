"""Domain errors.

Domain code raises these; `shared.platform.http` is the one place that turns
them into HTTP responses (and `shared.platform.tasks` into retry decisions).
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a domain function may raise on purpose.

    Args:
        detail: A message safe to show to the caller.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    """The request is well-formed but its values are not acceptable.

    Args:
        detail: What is wrong, for the caller.
        loc: Where the bad value is, FastAPI style (for example `("body", "phone")`).
    """

    def __init__(self, detail: str, loc: tuple[str | int, ...] = ("body",)) -> None:
        super().__init__(detail)
        self.loc = loc


class BadRequest(DomainError):
    """The request asks for something the service refuses (a URL it may not fetch, say)."""


class Unauthorized(DomainError):
    """No valid credentials were presented."""


class Forbidden(DomainError):
    """The caller is known but may not do this."""


class NotFound(DomainError):
    """The thing asked for does not exist (or is not visible to the caller)."""


class Conflict(DomainError):
    """The request conflicts with the current state (duplicate, wrong state)."""


class PaymentRequired(DomainError):
    """The caller has no allowance left for this."""


class PayloadTooLarge(DomainError):
    """The request body is larger than this endpoint accepts."""


class UnsupportedMediaType(DomainError):
    """The request body is not in a format this endpoint takes."""


class RateLimited(DomainError):
    """Too many requests; retry after `retry_after` seconds.

    Args:
        detail: What limit was hit.
        retry_after: Seconds until a retry may succeed.
    """

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency is down; the same request may succeed later."""


class BadGateway(DomainError):
    """An outside server the caller named failed, answered badly, too much or too slowly."""
