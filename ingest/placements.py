"""The one placement vocabulary: where on the body (or in which room) a device is worn.

Both the frame contract (`ingest/frame.py`, and through it the admin API's device registry) and the
motion encoder (`models/encoder.py`) import it from here; it lives in `ingest` because the data's
path flows ingest -> stream_workers, and `models` already imports `ingest` (never the reverse).

- `ENCODER_PLACEMENTS`: the rows of the encoder's placement embedding, in checkpoint order (the order
  is part of every shipped checkpoint's weights: append, never reorder).
- `SERVED_PLACEMENTS`: the wearable placements the shipped motion checkpoints were trained on (the
  simulator records them); `unknown` is served too (placement hidden during training).
- `UNSERVED_PLACEMENTS`: encoder rows that no shipped checkpoint trained, each with the reason a
  device or user gets when asking for one; they are refused rather than silently answered with an
  untrained embedding.
- `FRAME_PLACEMENTS`: what a frame may declare: the served wearables, `unknown`, and `room`.
"""

from __future__ import annotations

ENCODER_PLACEMENTS = (
    "unknown", "waist", "wrist", "pocket", "thigh", "chest", "upper_arm", "ankle", "head", "back", "hand",
)
SERVED_PLACEMENTS = ("waist", "wrist", "pocket", "chest", "ankle", "head")
_UNTRAINED = "its placement embedding was never trained (the training clips record {served}); "
UNSERVED_PLACEMENTS: dict[str, str] = {
    "thigh": _UNTRAINED + "a phone in a trouser pocket is 'pocket', otherwise declare 'unknown'",
    "upper_arm": _UNTRAINED + "declare 'unknown'",
    "back": _UNTRAINED + "declare 'unknown'",
    "hand": _UNTRAINED + "declare 'unknown'",
}
FRAME_PLACEMENTS = ("wrist", "waist", "pocket", "chest", "ankle", "head", "room", "unknown")

assert set(SERVED_PLACEMENTS) | set(UNSERVED_PLACEMENTS) | {"unknown"} == set(ENCODER_PLACEMENTS)
assert set(FRAME_PLACEMENTS) - {"room"} == set(SERVED_PLACEMENTS) | {"unknown"}


def normalise_placement(placement: str) -> str:
    """'Upper arm' / 'upper-arm' -> 'upper_arm'."""
    return placement.strip().lower().replace("-", "_").replace(" ", "_")


def unserved_reason(placement: str, served: tuple[str, ...] = SERVED_PLACEMENTS) -> str | None:
    """None when a model trained on `served` can answer for `placement`, else why not."""
    name = normalise_placement(placement)
    if name == "unknown" or name in served:
        return None
    if name in UNSERVED_PLACEMENTS:
        return f"placement {name!r}: " + UNSERVED_PLACEMENTS[name].format(served=", ".join(served))
    if name in ENCODER_PLACEMENTS:
        return f"placement {name!r} was not trained by this model (it knows {', '.join(served)}); declare 'unknown'"
    return f"placement {placement!r} is not a body placement (one of: {', '.join(served)}, unknown)"
