"""Attempt budgets in Redis: failed logins and sign-ups, counted so that every auth service
replica sees the same counts.

An attempt is counted *before* the password hash is computed, atomically against all of its
budgets (one Lua script): sixty concurrent guesses cannot all slip past a limit of ten while the
first ones are still being hashed. A spent budget refuses the attempt without counting it; a
budget refills when its fixed window (set by the first attempt) expires. A login that proves the
password gives its attempt back.

Which budgets a login spends (`login_budgets`):
- per (username, address): the guesses one client may make at one account;
- per address: the guesses one client may make at any accounts (password spraying);
- per username, from addresses that never logged in to it: distributed guessing at one account.
  Addresses that logged in successfully within `known_ttl_s` are exempt, so nobody can lock an
  owner out of their own account by failing on purpose from elsewhere.

Redis is a guard here, not the system of record: if it is unreachable the limiter fails OPEN
(attempts go on) and logs a warning, rather than locking every user out. After a failure it
leaves Redis alone for `cooldown_s`, so an outage costs one timeout, not one per login.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

LIMITER_ERRORS = Counter(
    "realchat_auth_rate_limiter_errors_total",
    "Login rate limiter calls that failed open because Redis was unavailable",
)

DEFAULT_PREFIX = "realchat:attempts"

#: KEYS: the budgets' counters, then the username's set of known addresses (or a dummy).
#: ARGV: the client address ('' if unknown), then per budget: limit, exempt flag, window seconds.
#: Returns 0 when the attempt was counted, else the seconds until the spent budget refills.
_RESERVE = """
local address = ARGV[1]
local budgets = #KEYS - 1
local known = KEYS[#KEYS]
local wait = 0
for i = 1, budgets do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[3 * i - 1]) then
    local exempt = ARGV[3 * i] == '1' and address ~= ''
      and redis.call('SISMEMBER', known, address) == 1
    if not exempt then
      wait = math.max(wait, redis.call('TTL', KEYS[i]), 1)
    end
  end
end
if wait > 0 then
  return wait
end
for i = 1, budgets do
  redis.call('SET', KEYS[i], 0, 'EX', tonumber(ARGV[3 * i + 1]), 'NX')
  redis.call('INCR', KEYS[i])
end
return 0
"""


#: Gives an attempt back to each budget whose window still runs (DECR on an expired key would
#: create a counter without a TTL, at -1, that never goes away).
_GIVE_BACK = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
"""


@dataclass(frozen=True)
class Budget:
    """One counter an attempt spends: at most `limit` attempts per window."""

    key: str
    limit: int
    window_s: int
    #: A username's budget: addresses that logged in to it recently may go on once it is spent.
    exempt_known: bool = False


@dataclass(frozen=True)
class LoginLimits:
    """Failed attempts allowed per window (`AuthSettings`)."""

    per_name_and_address: int
    per_address: int
    per_name: int
    window_s: int


class AttemptLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        known_ttl_s: int = 30 * 86400,
        timeout_s: float = 0.5,
        cooldown_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._known_ttl_s = known_ttl_s
        self._timeout_s = timeout_s
        self._cooldown_s = cooldown_s
        self._skip_until = 0.0
        self._reserve = redis.register_script(_RESERVE)
        self._give_back = redis.register_script(_GIVE_BACK)

    def key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def known_key(self, username: str) -> str:
        return self.key("known", username)

    async def reserve(
        self, budgets: Sequence[Budget], address: str | None, known_key: str | None = None
    ) -> int | None:
        """Count one attempt against every budget; if one is spent, count nothing and return
        the seconds until it refills. None also when Redis cannot say (fail open)."""
        if not budgets or self._cooling_down():
            return None
        args: list[str | int] = [address or ""]
        for budget in budgets:
            args += [budget.limit, int(budget.exempt_known), budget.window_s]
        keys = [b.key for b in budgets] + [known_key or self.key("none")]
        try:
            async with asyncio.timeout(self._timeout_s):
                wait = int(await self._reserve(keys=keys, args=args))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed_open("reserve", exc)
            return None
        return wait or None

    async def give_back(
        self,
        budgets: Sequence[Budget],
        *,
        clear: Sequence[Budget] = (),
        known_key: str | None = None,
        address: str | None = None,
    ) -> None:
        """After a successful attempt: return its count to `budgets`, empty `clear`, and
        remember `address` as one the user logs in from."""
        if self._cooling_down():
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                if budgets:
                    await self._give_back(keys=[b.key for b in budgets])
                async with self._redis.pipeline(transaction=True) as pipe:
                    for budget in clear:
                        pipe.delete(budget.key)
                    if known_key is not None and address:
                        pipe.sadd(known_key, address)
                        pipe.expire(known_key, self._known_ttl_s)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed_open("give back", exc)

    def _cooling_down(self) -> bool:
        if time.monotonic() < self._skip_until:
            LIMITER_ERRORS.inc()
            return True
        return False

    def _failed_open(self, step: str, exc: BaseException) -> None:
        LIMITER_ERRORS.inc()
        self._skip_until = time.monotonic() + self._cooldown_s
        log.warning(
            "login rate limiter unavailable; allowing attempts unlimited for a while",
            step=step,
            error=repr(exc),
            retry_in_s=self._cooldown_s,
        )


def login_budgets(
    limiter: AttemptLimiter, limits: LoginLimits, name: str | None, address: str | None
) -> tuple[list[Budget], Budget | None]:
    """The budgets a login spends, and which of them a success empties (the one of this name
    from this address). Without an address only the username's budget applies; without a
    possible username (it breaks the rules) only the address's."""
    budgets: list[Budget] = []
    pair = None
    if name is not None and address:
        pair_key = limiter.key("login", "pair", name, address)
        pair = Budget(pair_key, limits.per_name_and_address, limits.window_s)
        budgets.append(pair)
    if address:
        address_key = limiter.key("login", "addr", address)
        budgets.append(Budget(address_key, limits.per_address, limits.window_s))
    if name is not None:
        name_key = limiter.key("login", "name", name)
        budgets.append(Budget(name_key, limits.per_name, limits.window_s, exempt_known=True))
    return budgets, pair


def signup_budgets(
    limiter: AttemptLimiter, per_address: int, window_s: int, address: str | None
) -> list[Budget]:
    """Sign-ups per client address per window (each costs an argon2id hash and an account)."""
    if not address:
        return []
    return [Budget(limiter.key("signup", "addr", address), per_address, window_s)]
