"""Limits shared by every worker and replica: one Lua script admits, one settles.

Redis's own clock (TIME) is the only clock, so replicas with skewed clocks agree. Times in
the scripts are integer microseconds; money is integer nano-USD.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from llm_proxy.limits.memory import MemoryLimits
from llm_proxy.limits.plan import Plan, RateState, Reserve, Settlement, Slot, Verdict

log = logging.getLogger("llm_proxy")

# ARGV: request id, reservation ttl (us), then
#   n rates:    key, limit, window_us, cost
#   n slots:    key, limit
#   n reserves: key, limit, amount, base, ttl_s
# Returns {1, remaining_1, reset_us_1, ..., left_1, ...} or {0, kind, index, retry_us}.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rid = ARGV[1]
local hold = tonumber(ARGV[2])
local i = 3
local nr = tonumber(ARGV[i]); i = i + 1
local rates = {}
local out = {1}
for j = 1, nr do
  local key, limit, window, cost = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
  i = i + 4
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local interval = window / limit
  local new = tat + cost * interval
  if new - now > window then
    local wait = window
    if cost <= limit then wait = new - now - window end
    return {0, 1, j, math.floor(wait)}
  end
  rates[j] = {key, new, window}
  table.insert(out, math.floor((window - (new - now)) / interval + 1e-9))
  table.insert(out, math.floor(new - now))
end
local ns = tonumber(ARGV[i]); i = i + 1
local slots = {}
for j = 1, ns do
  local key, limit = ARGV[i], tonumber(ARGV[i+1])
  i = i + 2
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= limit then return {0, 2, j, 1000000} end
  slots[j] = key
end
local nb = tonumber(ARGV[i]); i = i + 1
local res = {}
for j = 1, nb do
  local key, limit, amount, base, ttl = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2]), ARGV[i+3], tonumber(ARGV[i+4])
  i = i + 5
  if redis.call('HSETNX', key, 's', base) == 1 then redis.call('EXPIRE', key, ttl) end
  local all = redis.call('HGETALL', key)
  local spent, reserved = 0, 0
  for k = 1, #all, 2 do
    local f, v = all[k], all[k+1]
    if f == 's' then
      spent = tonumber(v)
    else
      local sep = string.find(v, ':', 1, true)
      if tonumber(string.sub(v, sep + 1)) < now then
        redis.call('HDEL', key, f)
      else
        reserved = reserved + tonumber(string.sub(v, 1, sep - 1))
      end
    end
  end
  if spent >= limit or spent + reserved + amount > limit then return {0, 3, j, 0} end
  res[j] = {key, amount, ttl}
  table.insert(out, limit - spent - reserved - amount)
end
for j = 1, nr do
  local r = rates[j]
  redis.call('SET', r[1], string.format('%.0f', r[2]), 'PX', math.ceil((r[2] - now) / 1000) + 1000)
end
for j = 1, ns do
  redis.call('ZADD', slots[j], now + hold, rid)
  redis.call('PEXPIRE', slots[j], math.ceil(hold / 1000) + 1000)
end
for j = 1, nb do
  local r = res[j]
  redis.call('HSET', r[1], 'r:' .. rid, string.format('%d:%.0f', r[2], now + hold))
  redis.call('EXPIRE', r[1], r[3])
end
return out
"""

# ARGV: request id, then n rates: key, limit, window_us, delta; n slots: key;
#   n reserves: key, actual
SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rid = ARGV[1]
local i = 2
local nr = tonumber(ARGV[i]); i = i + 1
for j = 1, nr do
  local key, limit, window, delta = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
  i = i + 4
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new = tat + delta * window / limit
  if new > now then
    redis.call('SET', key, string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
local ns = tonumber(ARGV[i]); i = i + 1
for j = 1, ns do
  redis.call('ZREM', ARGV[i], rid)
  i = i + 1
end
local nb = tonumber(ARGV[i]); i = i + 1
for j = 1, nb do
  local key, actual = ARGV[i], ARGV[i+1]
  i = i + 2
  if redis.call('HDEL', key, 'r:' .. rid) == 1 or redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 's', actual)
  end
end
return 1
"""

# KEYS: none; ARGV: bucket key, limit, window_us -> {remaining, reset_us}
PEEK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', ARGV[1]) or '0')
if tat < now then tat = now end
local interval = window / limit
local rem = math.floor((window - (tat - now)) / interval + 1e-9)
if rem < 0 then rem = 0 end
return {rem, math.floor(tat - now)}
"""

_US = 1_000_000


class RedisLimits:
    """The same limits as MemoryLimits, exact across processes (one round trip per call).

    While Redis does not answer, calls are admitted by an in-process MemoryLimits instead (exact
    per process only, budgets seeded from the store's spend): an outage of Redis must not become
    one of the gateway. Decision 0011."""

    shared = True

    def __init__(self, client: Any, prefix: str, hold: float) -> None:
        self.redis = client
        self.prefix = prefix + ":"
        self.hold_us = int(hold * _US)
        self._admit = client.register_script(ADMIT)
        self._settle = client.register_script(SETTLE)
        self._peek = client.register_script(PEEK)
        self.fallback = MemoryLimits()
        self.down_since: float | None = None

    def _lost(self, e: Exception) -> None:
        if self.down_since is None:
            self.down_since = time.time()
            log.error(
                "Redis unreachable: limits and budgets are per process until it is back",
                extra={"event": "limits_redis_down", "error": type(e).__name__},
            )

    def _back(self) -> None:
        if self.down_since is not None:
            log.info(
                "Redis reachable again: limits are shared again",
                extra={
                    "event": "limits_redis_up",
                    "down_s": round(time.time() - self.down_since, 1),
                },
            )
            self.down_since = None

    async def admit(self, plan: Plan) -> Verdict:
        try:
            verdict = await self._admit_shared(plan)
        except RedisError as e:
            self._lost(e)
            # The script may have run before the answer was lost: give back what it took.
            with contextlib.suppress(RedisError):
                await self.settle(
                    Settlement(
                        plan.request_id, slots=plan.slots, reserves=[(b, 0) for b in plan.reserves]
                    ),
                    False,
                )
            verdict = self.fallback.admit_now(plan, time.time())
            verdict.local = True
            return verdict
        self._back()
        return verdict

    async def _admit_shared(self, plan: Plan) -> Verdict:
        p = self.prefix
        args: list[Any] = [plan.request_id, self.hold_us, len(plan.rates)]
        for r in plan.rates:
            args += [p + r.key, r.limit, int(r.window * _US), r.cost]
        args.append(len(plan.slots))
        for s in plan.slots:
            args += [p + s.key, s.limit]
        args.append(len(plan.reserves))
        for b in plan.reserves:
            args += [p + b.key, b.limit, b.amount, b.base, int(b.ttl)]
        got = await self._admit(args=args)
        if int(got[0]) != 1:
            kind, idx, retry = int(got[1]), int(got[2]) - 1, int(got[3]) / _US
            failed: Any = (plan.rates, plan.slots, plan.reserves)[kind - 1][idx]
            return Verdict(False, failed=failed, retry_after=retry)
        states = [
            RateState(r, int(got[1 + 2 * j]), int(got[2 + 2 * j]) / _US)
            for j, r in enumerate(plan.rates)
        ]
        left = [int(x) for x in got[1 + 2 * len(plan.rates) :]]
        return Verdict(True, states=states, budget_left=left)

    async def settle(self, s: Settlement, local: bool = False) -> None:
        if local:
            self.fallback.settle_now(s, time.time())
            return
        p = self.prefix
        args: list[Any] = [s.request_id, len(s.rates)]
        for r, delta in s.rates:
            args += [p + r.key, r.limit, int(r.window * _US), delta]
        args.append(len(s.slots))
        args += [p + slot.key for slot in s.slots]
        args.append(len(s.reserves))
        for b, actual in s.reserves:
            args += [p + b.key, actual]
        await self._settle(args=args)

    async def spent(self, key: str) -> tuple[int, int] | None:
        """(spent, reserved) of a budget counter, if Redis holds it."""
        try:
            got = await self.redis.hgetall(self.prefix + key)
        except RedisError as e:
            self._lost(e)
            return await self.fallback.spent(key)
        if not got:
            return None
        spent, reserved = 0, 0
        for f, v in got.items():
            if f in (b"s", "s"):
                spent = int(v)
            else:
                reserved += int(str(v if isinstance(v, str) else v.decode()).split(":")[0])
        return spent, reserved

    async def peek(self, key: str, limit: int, window: float) -> tuple[int, float]:
        try:
            got = await self._peek(args=[self.prefix + key, limit, int(window * _US)])
        except RedisError as e:
            self._lost(e)
            return await self.fallback.peek(key, limit, window)
        return int(got[0]), int(got[1]) / _US

    async def in_use(self, key: str) -> int:
        try:
            return int(await self.redis.zcard(self.prefix + key))
        except RedisError as e:
            self._lost(e)
            return await self.fallback.in_use(key)

    async def aclose(self) -> None:
        await self.redis.aclose()


__all__ = ["RedisLimits", "Reserve", "Slot"]
