"""Per-client-IP limits (seed 001): which limit a path gets, and who the client is."""

from __future__ import annotations

import ipaddress
from typing import Any

from llm_proxy.limits.plan import Rate

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpPolicy:
    def __init__(self, cfg: Any) -> None:
        self.enabled: bool = cfg.enabled
        self.default = cfg.default
        self.inference = cfg.inference
        self.inference_paths = frozenset(cfg.inference_paths)
        self.websocket = cfg.websocket
        self.routes = dict(cfg.routes)
        self.exempt: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in cfg.exempt
        )
        self.trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in cfg.trusted_proxies
        )
        self._exempt_cache: dict[str, bool] = {}

    def _in(self, ip: str, nets: tuple[Network, ...]) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in nets)

    def is_exempt(self, ip: str) -> bool:
        got = self._exempt_cache.get(ip)
        if got is None:
            got = self._in(ip, self.exempt)
            if len(self._exempt_cache) > 10_000:
                self._exempt_cache.clear()
            self._exempt_cache[ip] = got
        return got

    def client_ip(self, scope: dict[str, Any], headers: dict[bytes, bytes]) -> str:
        """The peer, or, when the peer is a trusted proxy, the last untrusted X-Forwarded-For hop."""
        client = scope.get("client")
        peer = client[0] if client else ""
        if not self.trusted or not self._in(peer, self.trusted):
            return peer
        fwd = headers.get(b"x-forwarded-for")
        if not fwd:
            return peer
        for hop in reversed([h.strip() for h in fwd.decode("latin-1").split(",")]):
            if hop and not self._in(hop, self.trusted):
                return hop
        return peer

    def rate(self, path: str, ip: str, websocket: bool = False) -> Rate | None:
        """The limit this request counts against, or None (off, or an exempt client)."""
        if not self.enabled or not ip or self.is_exempt(ip):
            return None
        lim = self.routes.get(path)
        kind = path
        if lim is None:
            if websocket:
                lim, kind = self.websocket, "ws"
            elif path in self.inference_paths:
                lim, kind = self.inference, "inference"
            else:
                lim, kind = self.default, "default"
        return Rate(f"ip:{kind}:{ip}", lim.limit, lim.window, 1.0, "ip")
