"""Seed 001's WebSocket API at /ws (filled in by issue 6)."""

from __future__ import annotations

from fastapi import APIRouter

from llm_proxy.gateway import Gateway


def build_ws(gw: Gateway) -> APIRouter:
    return APIRouter()
