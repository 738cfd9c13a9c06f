"""The auth service's error taxonomy: a contract error code and an HTTP status per kind of
error. The transport (`realchat.http.json_errors`) turns them into `{"error": {"code",
"message"}}` bodies."""

from __future__ import annotations

from realchat.contract.error_codes import ErrorCode
from realchat.http import Refusal


class AuthError(Refusal):
    """An error the caller caused and can act on; the message is safe to show them."""

    status: int = 500

    def __init__(self, code: str, message: str) -> None:
        super().__init__(type(self).status, code, message)


class BadRequest(AuthError):  # noqa: N818 - named after the HTTP status it maps to
    """The body is not JSON at all (`invalid_json`)."""

    status = 400


class InvalidInput(AuthError):  # noqa: N818
    """JSON of the wrong shape or a value breaking a rule (`invalid_username`, ...)."""

    status = 422


class UsernameTaken(AuthError):  # noqa: N818
    status = 409

    def __init__(self) -> None:
        super().__init__(ErrorCode.USERNAME_TAKEN, "this username is already taken")


class InvalidCredentials(AuthError):  # noqa: N818
    """One generic error for every failed login, so it never tells which part was wrong."""

    status = 401

    def __init__(self) -> None:
        super().__init__(ErrorCode.INVALID_CREDENTIALS, "wrong username or password")


class Unauthorized(AuthError):  # noqa: N818
    """The request needs a valid access token and has none."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.UNAUTHORIZED, message)


class TooManyAttempts(AuthError):  # noqa: N818
    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            ErrorCode.TOO_MANY_ATTEMPTS, f"too many failed logins; try again in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class TooManySignups(AuthError):  # noqa: N818
    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            ErrorCode.TOO_MANY_SIGNUPS,
            f"too many accounts created from this address; try again in {retry_after_s} s",
        )
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Busy(AuthError):  # noqa: N818
    """Every password-hashing place is taken (a burst of logins or sign-ups)."""

    status = 503

    def __init__(self) -> None:
        super().__init__(ErrorCode.AUTH_BUSY, "the auth service is busy; try again shortly")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class NotFound(AuthError):  # noqa: N818
    status = 404
