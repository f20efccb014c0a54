"""A circuit breaker per deployment: closed -> open after N consecutive failures -> half-open
after the timeout, where a single probe request decides between closed and open again."""

from __future__ import annotations

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    """Thresholds are passed in on each call, so a config reload changes them at once."""

    __slots__ = ("failures", "opened_at", "probing", "state")

    def __init__(self) -> None:
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.probing = False  # half-open: the one probe is in flight

    def available(self, now: float, timeout: float) -> bool:
        """Whether a request may be sent now (does not reserve the half-open probe)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and now < self.opened_at + timeout:
            return False
        return not self.probing

    def acquire(self, now: float, timeout: float) -> bool:
        """Reserve the right to send: always when closed; the single probe when half-open."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now < self.opened_at + timeout:
                return False
            self.state = HALF_OPEN
            self.probing = False
        if self.probing:
            return False
        self.probing = True
        return True

    def success(self) -> None:
        self.state, self.failures, self.probing = CLOSED, 0, False

    def failure(self, now: float, threshold: int) -> None:
        self.failures += 1
        if self.state != CLOSED or self.failures >= threshold:
            self.state, self.opened_at, self.probing = OPEN, now, False

    def release(self) -> None:
        """The probe ended without a verdict (cancelled): the next request probes instead."""
        self.probing = False

    def retry_at(self, timeout: float) -> float | None:
        """When an open circuit lets its probe through (monotonic seconds), if it is open."""
        return self.opened_at + timeout if self.state == OPEN else None


__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Breaker"]
