"""`POST /v1/ask`: a question about a device or a room, answered from storage (admin/ask.py) with the
adapter-LLM reading the recent sensor window. Read scope. The LLM loads once per process on first use
(~20-30 s); `use_llm: false` answers from the stored facts alone."""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from admin.deps import ReadKey, Store
from admin.routes.params import IdFilter
from admin.models import Ident, Time
from admin.routes import NOT_FOUND, PROBLEMS

router = APIRouter(prefix="/v1", tags=["questions"], responses=PROBLEMS)
_llm_lock = threading.Lock()


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=2000)]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)] = Field(
        description="In words, at most 2000 characters.")
    device_id: Ident | None = None
    room_id: Ident | None = None
    since_s: float = Field(600.0, gt=0, le=7 * 86_400, description="Seconds before `end` the question covers.")
    end: Time | None = Field(None, description="End of the range (default: now).")
    history: list[Turn] = Field(default_factory=list, max_length=20, description="Earlier turns of a dialog.")
    compare_with: list[Ident] = Field(default_factory=list, max_length=5, description=(
        "Other devices (with device_id) or rooms (with room_id) to compare with over the same range."))
    use_llm: bool = True
    narrate: bool = False


def _sensor_llm(request: Request):
    """The process's SensorLLM, or None when no adapter is installed (answers then rest on facts alone)."""
    state = request.app.state
    with _llm_lock:
        if not hasattr(state, "sensor_llm"):
            try:
                from models.llm.answer import SensorLLM

                state.sensor_llm = SensorLLM.shared()
            except FileNotFoundError:
                state.sensor_llm = None
        return state.sensor_llm


@router.post("/ask", responses=NOT_FOUND)
def ask_route(body: AskRequest, request: Request, store: Store, _: ReadKey) -> dict:
    """The answer, the time range, the rows and model versions it rests on, and what the LLM added."""
    from admin.ask import AskError, ask

    if (body.device_id is None) == (body.room_id is None):
        raise HTTPException(422, "give exactly one of device_id or room_id")
    llm = (lambda: _sensor_llm(request)) if body.use_llm else None
    try:
        with store.serialized():
            return ask(store.engine, request.app.state.queries(), body.question, device_id=body.device_id,
                       room_id=body.room_id, since_s=body.since_s, end=body.end,
                       history=[t.model_dump() for t in body.history], llm=llm, narrate=body.narrate,
                       compare_with=body.compare_with)
    except AskError as exc:
        raise HTTPException(exc.status, exc.reason) from None


@router.get("/narratives")
def narratives(request: Request, store: Store, _: ReadKey, start: Time | None = None, end: Time | None = None,
               subject_id: IdFilter = None, room_id: IdFilter = None) -> list[dict]:
    """The narration stage's one-line descriptions of closed episodes and room-state changes, newest first."""
    from admin.routes.queries import _span

    start, end = _span(start, end)
    with store.serialized():
        return request.app.state.queries().narratives(start, end, subject_id, room_id,
                                                      request.app.state.settings.api.max_rows)
