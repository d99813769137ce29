"""One router module per resource. Each exposes `router`; `admin.app.ROUTERS` mounts them."""

from __future__ import annotations

from fastapi import APIRouter

from admin.models import Problem

PROBLEMS = {
    400: {"model": Problem, "description": "The body cannot be parsed at all (not JSON, not UTF-8)."},
    401: {"model": Problem, "description": "No key, or a malformed, unknown, revoked or expired one."},
    403: {"model": Problem, "description": "The key lacks the scope this needs."},
    422: {"model": Problem, "description": "The request is not valid; `detail` says where and why."},
    429: {"model": Problem, "description": "Too many failed key attempts from this client; see Retry-After."},
    503: {"model": Problem, "description": "A service the API needs (database, Redis, Kafka) is unavailable."},
}
NOT_FOUND = {404: {"model": Problem, "description": "No such record."}}
CONFLICT = {409: {"model": Problem, "description": "Conflicts with what is stored; `detail` says how."}}
Limit = 1000


def resource_router(path: str, tag: str) -> APIRouter:
    return APIRouter(prefix=f"/v1/{path}", tags=[tag], responses=PROBLEMS)
