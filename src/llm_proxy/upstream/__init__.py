"""Upstream HTTP: one small transport interface, implemented on pooled aiohttp sessions."""
