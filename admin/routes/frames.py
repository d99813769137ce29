"""Historical import: frames in the frame contract, with their own timestamps, through the ingest gate.

The body is JSON lines (`application/x-ndjson`: one frame document per line) or msgpack
(`application/msgpack`: frame documents one after another). Every frame is checked first, exactly as
the gate checks it (decoding, limits, admission); if any is refused the answer lists each refused
one and why and nothing is sent. Otherwise all go through the gate to the frames topic.
"""

from __future__ import annotations

import msgpack
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from admin.deps import AdminKey
from admin.models import ImportResult
from admin.routes import resource_router

router = resource_router("frames", "import")
JSON_LINES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
MSGPACK = ("application/msgpack", "application/x-msgpack")


def split_frames(raw: bytes, content_type: str) -> list[bytes]:
    """The upload as one payload per frame; raises HTTPException(415/422) when it cannot be split."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in JSON_LINES:
        return [line for line in raw.split(b"\n") if line.strip()]
    if kind in MSGPACK:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(raw) + 1)
        unpacker.feed(raw)
        payloads = []
        try:
            for doc in unpacker:
                payloads.append(msgpack.packb(doc, use_bin_type=True))
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise HTTPException(422, f"not a msgpack stream after {len(payloads)} documents "
                                     f"({type(exc).__name__}: {exc})") from None
        return payloads
    raise HTTPException(415, f"send frames as {JSON_LINES[0]} (JSON lines) or {MSGPACK[0]}, not {kind or 'nothing'}")


@router.post(":import", response_model=ImportResult,
             responses={413: {"description": "Body too large."}, 415: {"description": "Not JSON lines or msgpack."}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 JSON_LINES[0]: {"schema": {"type": "string"}}, MSGPACK[0]: {"schema": {"type": "string", "format": "binary"}}}}})
async def import_frames(request: Request, caller: AdminKey):
    state = request.app.state
    raw = await request.body()
    if len(raw) > state.settings.api.import_max_bytes:
        raise HTTPException(413, f"import larger than {state.settings.api.import_max_bytes} bytes: split it")
    payloads = split_frames(raw, request.headers.get("content-type", ""))
    if not payloads:
        raise HTTPException(422, "no frames in the body")
    return await run_in_threadpool(_import, state, payloads, f"api-import:key-{caller.key_id}")


def _import(state, payloads: list[bytes], source: str) -> ImportResult:
    gate = state.gate()
    if gate is None:
        raise HTTPException(503, "Kafka is unavailable: frames cannot be imported now")
    refused = []
    for index, payload in enumerate(payloads):
        decision = gate.check(payload)
        if not decision.accepted:
            refused.append({"index": index, "device_id": decision.device_id, "code": decision.code,
                            "reason": decision.reason})
    if refused:
        raise HTTPException(422, {"message": f"{len(refused)} of {len(payloads)} frames refused; none imported",
                                  "refused": refused[:1000]})
    for payload in payloads:
        gate.admit(payload, source)  # a device deactivated meanwhile is dead-lettered: nothing is lost
    gate.producer.flush()
    return ImportResult(accepted=len(payloads), topic=state.settings.kafka.frames_topic)
