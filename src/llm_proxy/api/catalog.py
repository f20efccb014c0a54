"""Seed 001's model catalog under /api/v1/models (filled in by issue 6)."""

from __future__ import annotations

from fastapi import APIRouter

from llm_proxy.gateway import Gateway


def build_catalog(gw: Gateway) -> APIRouter:
    return APIRouter()
