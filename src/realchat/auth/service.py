"""The auth service's rules: what a valid account is, registration, login (with rate limiting)
and looking users up. No HTTP here (`api.py`), no SQL (`store.py`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import asyncpg
import structlog
from prometheus_client import Counter
from redis.exceptions import RedisError

from realchat.auth.errors import (
    Busy,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    TooManyAttempts,
    TooManySignups,
    Unauthorized,
    UsernameTaken,
)
from realchat.auth.limits import AttemptLimiter, LoginLimits, login_budgets, signup_budgets
from realchat.auth.passwords import HashingBusy, Passwords
from realchat.auth.revocation import TokenVersions
from realchat.auth.store import AuthStore, UserRecord
from realchat.auth.tokens import TokenClaims, TokenIssuer
from realchat.contract.error_codes import ErrorCode
from realchat.contract.limits import (
    MAX_PASSWORD_CHARS,
    MAX_USERNAME_CHARS,
    MIN_PASSWORD_CHARS,
    MIN_USERNAME_CHARS,
    USERNAME_ALPHABET,
)
from realchat.forwarded import is_trusted, trusted_networks

log = structlog.get_logger(__name__)

LOGINS = Counter("realchat_auth_logins_total", "Login attempts by outcome", ["outcome"])
REGISTRATIONS = Counter("realchat_auth_registrations_total", "Accounts created")
REVOCATIONS = Counter(
    "realchat_auth_token_revocations_total", "Logouts and password changes (tokens revoked)"
)
REFUSED_SIGNUPS = Counter(
    "realchat_auth_signups_refused_total", "Sign-ups refused before hashing, by reason", ["reason"]
)


@dataclass(frozen=True)
class SignupLimits:
    """Sign-ups allowed per client address per window (`AuthSettings`)."""

    per_address: int
    window_s: int


#: The contract's username rule, applied after folding ASCII upper-case to lower-case.
USERNAME_RULE = re.compile(f"[{USERNAME_ALPHABET}]{{{MIN_USERNAME_CHARS},{MAX_USERNAME_CHARS}}}")


@dataclass(frozen=True)
class User:
    user_id: uuid.UUID
    username: str


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


def normalize_username(value: str) -> str:
    """The stored form of a username, or raise `invalid_username`.

    Usernames are case-insensitive: ASCII upper-case is folded to lower-case before the
    contract's rule (3-32 characters of a-z 0-9 _ . -) is checked, so "Alice" and "alice" are
    one account. Nothing else is folded or trimmed: any other character is refused.
    """
    folded = value.lower() if value.isascii() else value
    if USERNAME_RULE.fullmatch(folded) is None:
        raise InvalidInput(
            ErrorCode.INVALID_USERNAME,
            f"username must be {MIN_USERNAME_CHARS}-{MAX_USERNAME_CHARS} characters of "
            "a-z, 0-9, '_', '.', '-'",
        )
    return folded


def check_password(value: str) -> None:
    """Raise `invalid_password` unless `value` is `MIN_PASSWORD_CHARS` to `MAX_PASSWORD_CHARS`
    characters of encodable text."""
    if not MIN_PASSWORD_CHARS <= len(value) <= MAX_PASSWORD_CHARS:
        raise InvalidInput(
            ErrorCode.INVALID_PASSWORD,
            f"password must be {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters",
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            ErrorCode.INVALID_PASSWORD, "password must be valid Unicode text"
        ) from None


def _is_valid_password(value: str) -> bool:
    try:
        check_password(value)
    except InvalidInput:
        return False
    return True


class AuthService:
    def __init__(
        self,
        store: AuthStore,
        passwords: Passwords,
        issuer: TokenIssuer,
        limiter: AttemptLimiter,
        login_limits: LoginLimits,
        signup_limits: SignupLimits,
        versions: TokenVersions,
        unlimited_addresses: Collection[str] = (),
        on_revoked: Callable[[uuid.UUID], Awaitable[object]] | None = None,
    ) -> None:
        """`on_revoked`: what else ends with a user's sessions (their devices' push tokens)."""
        self._store = store
        self._on_revoked = on_revoked
        self._versions = versions
        self._passwords = passwords
        self._issuer = issuer
        self._limiter = limiter
        self._login_limits = login_limits
        self._signup_limits = signup_limits
        self._unlimited = trusted_networks(unlimited_addresses)

    def _counted(self, client_address: str | None) -> str | None:
        """The address that per-address budgets count, None for an unlimited one."""
        if client_address is None or is_trusted(client_address, self._unlimited):
            return None
        return client_address

    async def register(
        self, username: str, password: str, client_address: str | None = None
    ) -> User:
        name = normalize_username(username)
        check_password(password)
        client_address = self._counted(client_address)
        limits = self._signup_limits
        budgets = signup_budgets(self._limiter, limits.per_address, limits.window_s, client_address)
        retry_after = await self._limiter.reserve(budgets, client_address)
        if retry_after is not None:
            REFUSED_SIGNUPS.labels("limited").inc()
            raise TooManySignups(retry_after)
        try:
            password_hash = await self._passwords.hash(password, background=True)
        except HashingBusy:
            REFUSED_SIGNUPS.labels("busy").inc()
            await self._limiter.give_back(budgets)
            raise Busy() from None
        record = await self._store.create_user(name, password_hash)
        if record is None:
            raise UsernameTaken()
        REGISTRATIONS.inc()
        log.info("account created", user_id=str(record.user_id))
        return User(record.user_id, record.username)

    async def login(self, username: str, password: str, client_address: str | None) -> AccessToken:
        """A token for the right password; one generic error for anything else."""
        user = await self._checked_password(_login_name(username), password, client_address)
        LOGINS.labels("succeeded").inc()
        token, expires_in = self._issuer.issue(user.user_id, user.token_version)
        return AccessToken(token, expires_in)

    async def check_current(self, claims: TokenClaims) -> None:
        """Raise `Unauthorized` if the token was revoked (or its user is gone)."""
        record = await self._store.find_by_id(claims.user_id)
        if record is None or claims.version < record.token_version:
            raise Unauthorized("access token not accepted (revoked)")

    async def logout(self, claims: TokenClaims) -> None:
        """Revoke every token of the user (each device logs in again)."""
        await self._revoke(claims, None)

    async def change_password(
        self, claims: TokenClaims, current: str, new: str, client_address: str | None
    ) -> None:
        """Set a new password, given the current one (counted like a login attempt), and
        revoke every token of the user."""
        check_password(new)
        record = await self._store.find_by_id(claims.user_id)
        if record is None:
            raise Unauthorized("the token's user does not exist")
        await self._checked_password(record.username, current, client_address)
        try:
            new_hash = await self._passwords.hash(new)
        except HashingBusy:
            raise Busy() from None
        await self._revoke(claims, new_hash)
        log.info("password changed", user_id=str(claims.user_id))

    async def _revoke(self, claims: TokenClaims, password_hash: str | None) -> None:
        version = await self._store.revoke_tokens(claims.user_id, claims.version, password_hash)
        if version is None:
            # Revoked already. Announce the current version again (harmless, and it heals a
            # revocation whose announcement failed), but this token changes nothing.
            record = await self._store.find_by_id(claims.user_id)
            if record is not None:
                await self._announce(claims.user_id, record.token_version)
            raise Unauthorized("access token not accepted (revoked)")
        REVOCATIONS.inc()
        await self._announce(claims.user_id, version)
        if self._on_revoked is not None:
            await self._on_revoked(claims.user_id)

    async def _announce(self, user_id: uuid.UUID, version: int) -> None:
        try:
            await self._versions.announce(user_id, version)
        except (RedisError, OSError) as exc:
            log.warning("token revocation not announced", user_id=str(user_id), error=str(exc))
            raise Busy() from None

    async def _checked_password(
        self, name: str | None, password: str, client_address: str | None
    ) -> UserRecord:
        """The account if `password` is its password; one generic error for anything else. The
        attempt is counted before the password is checked; once a budget is spent
        (`limits.py`), even the right password is refused, or guessing could simply go on until
        it hits."""
        client_address = self._counted(client_address)
        budgets, pair = login_budgets(self._limiter, self._login_limits, name, client_address)
        known = self._limiter.known_key(name) if name is not None else None
        retry_after = await self._limiter.reserve(budgets, client_address, known)
        if retry_after is not None:
            LOGINS.labels("limited").inc()
            raise TooManyAttempts(retry_after)
        user = await self._store.find_by_username(name) if name is not None else None
        try:
            matches = await self._password_matches(user, password)
        except HashingBusy:
            LOGINS.labels("busy").inc()
            await self._limiter.give_back(budgets)
            raise Busy() from None
        if not matches:
            LOGINS.labels("failed").inc()
            raise InvalidCredentials()
        assert user is not None, "a password only matches a real account"
        await self._limiter.give_back(
            budgets, clear=[pair] if pair else [], known_key=known, address=client_address
        )
        await self._upgrade_hash(user, password)
        return user

    async def find_user(self, username: str) -> User:
        name = _login_name(username)
        record = await self._store.find_by_username(name) if name is not None else None
        if record is None:
            raise NotFound(ErrorCode.USER_NOT_FOUND, "no user with this username")
        return User(record.user_id, record.username)

    async def _password_matches(self, user: UserRecord | None, password: str) -> bool:
        """Always pays for one argon2 verification, whether or not the user exists or the
        password could ever be valid, so the response time says nothing about either."""
        if not _is_valid_password(password):
            user, password = None, "placeholder-password"
        return await self._passwords.verify(
            user.password_hash if user is not None else None, password
        )

    async def _upgrade_hash(self, user: UserRecord, password: str) -> None:
        """Re-hash with the current parameters after they changed (best effort: the login
        itself already succeeded)."""
        if not self._passwords.needs_rehash(user.password_hash):
            return
        try:
            new_hash = await self._passwords.hash(password)
            await self._store.replace_password_hash(user.user_id, user.password_hash, new_hash)
        except (asyncpg.PostgresError, OSError, HashingBusy) as exc:
            log.warning("password re-hash failed", user_id=str(user.user_id), error=repr(exc))


def _login_name(username: str) -> str | None:
    """The stored form of a name someone logs in or looks up with; None if no account can have
    it (then nothing is looked up)."""
    try:
        return normalize_username(username)
    except InvalidInput:
        return None
