"""The narration stage: one line of text per closed episode or room-state change, in batches, off the
encoder's path.

    worker's write loop ──offer()──► bounded queue ──thread──► LLM, a batch at a time ──► `narratives`

`offer` never waits: when the queue is full the item is dropped and counted (`dropped`), so a slow LLM
costs narratives, never window latency. Every line's numbers are checked against the episode it describes;
a line that states another number is replaced by the plain template sentence (and counted, `unfaithful`).
The batched LLM is `models.llm.answer.SensorLLM.generate`; any callable list[str] -> list[str] works.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from models.llm.grounding import numbers_in

log = logging.getLogger(__name__)
MAX_TEXT = 500


@dataclass
class NarrationItem:
    kind: str  # 'episode' | 'room_state'
    subject_id: str
    room_id: str | None
    at: float
    ends_at: float | None
    facts: str  # the prompt's facts, and the fallback sentence
    numbers: set[float]  # what a faithful line may state
    source: dict = field(default_factory=dict)


def episode_item(episode, room_id: str | None = None) -> NarrationItem:
    seconds = round(episode.end - episode.start)
    t0 = datetime.fromtimestamp(episode.start, timezone.utc)
    facts = (f"Device {episode.device_id} was {episode.activity} for {seconds} s from {t0:%H:%M:%S} UTC "
             f"({episode.windows} windows).")
    allowed = set(numbers_in(facts)) | {float(seconds // 60), float(seconds % 60), round(seconds / 60, 1)}
    return NarrationItem("episode", episode.device_id, room_id, episode.start, episode.end, facts, allowed,
                         {"activity": episode.activity, "windows": episode.windows,
                          "model_version": episode.model_version, "confidence": round(episode.confidence, 4)})


def room_state_item(state, previous: tuple[str, str] | None) -> NarrationItem:
    t = datetime.fromtimestamp(state.window_end, timezone.utc)
    was = f" (was {previous[0]}, {previous[1]})" if previous else ""
    facts = f"Room {state.room_id or state.device_id} became {state.occupancy}, used for {state.room_use}, at {t:%H:%M} UTC{was}."
    return NarrationItem("room_state", state.device_id, state.room_id, state.window_end, None, facts,
                         set(numbers_in(facts)),
                         {"occupancy": state.occupancy, "room_use": state.room_use,
                          "model_version": state.model_version})


class NarrationStage:
    def __init__(self, narrate, write, model_version: str, queue_size: int = 64, batch_size: int = 8):
        """`narrate(list of fact strings) -> lines`; `write(list of row dicts)` stores them."""
        self._narrate, self._write = narrate, write
        self.model_version = model_version
        self.batch_size = batch_size
        self._queue: queue.Queue[NarrationItem] = queue.Queue(maxsize=queue_size)
        self._last_room: dict[str, tuple[str, str]] = {}
        self.offered = self.dropped = self.written = self.unfaithful = self.failed = 0
        self.busy_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="narration", daemon=True)
        self._thread.start()

    # -- the worker's side: never blocks ---------------------------------------------------------------
    def offer(self, item: NarrationItem) -> bool:
        self.offered += 1
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def offer_episodes(self, episodes) -> None:
        for episode in episodes:
            if episode.closed:
                self.offer(episode_item(episode))

    def offer_room_states(self, states) -> None:
        for state in states:
            now = (state.occupancy, state.room_use)
            before = self._last_room.get(state.device_id)
            self._last_room[state.device_id] = now
            if before != now:
                self.offer(room_state_item(state, before))

    # -- the stage's thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            started = time.perf_counter()
            try:
                self._write(self._rows(batch))
                self.written += len(batch)
            except Exception:  # a failed batch costs its narratives, never the worker
                self.failed += len(batch)
                log.exception("narration batch of %d failed", len(batch))
            self.busy_s += time.perf_counter() - started

    def _rows(self, batch: list[NarrationItem]) -> list[dict]:
        lines = self._narrate([item.facts for item in batch])
        rows = []
        for item, line in zip(batch, lines):
            line = " ".join((line or "").split())[:MAX_TEXT]
            ok = bool(line) and all(any(abs(n - a) < 1e-6 for a in item.numbers) for n in numbers_in(line))
            if not ok:
                self.unfaithful += 1
            rows.append({
                "subject_id": item.subject_id, "at": datetime.fromtimestamp(item.at, timezone.utc), "kind": item.kind,
                "model_version": self.model_version, "room_id": item.room_id,
                "ends_at": None if item.ends_at is None else datetime.fromtimestamp(item.ends_at, timezone.utc),
                "text": line if ok else item.facts[:MAX_TEXT],
                "source": json.dumps({**item.source, "llm_line_kept": ok}),
            })
        return rows

    def stats(self) -> dict:
        return {"offered": self.offered, "dropped": self.dropped, "written": self.written, "failed": self.failed,
                "unfaithful_replaced": self.unfaithful, "queued": self._queue.qsize(),
                "kept_fraction": round(self.written / self.offered, 4) if self.offered else None,
                "busy_s": round(self.busy_s, 2)}

    def close(self, timeout_s: float = 30.0) -> dict:
        """Finish what is queued (up to timeout_s), stop the thread, return the counters."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        return self.stats()


def llm_narrator(llm, max_new_tokens: int = 32):
    """Lines from the adapter-LLM, one batched generate call per batch."""
    def narrate(facts: list[str]) -> list[str]:
        messages = [[{"role": "user", "content": f"Rewrite as one short sentence for a care log: {f}"}] for f in facts]
        return llm.generate(messages, "narration", max_new_tokens=max_new_tokens)

    return narrate


def postgres_writer(engine):
    """Idempotent upserts into `narratives` (a re-delivered episode rewrites its line)."""
    from sqlalchemy import text

    sql = text(
        "INSERT INTO narratives (subject_id, at, kind, model_version, room_id, ends_at, text, source) "
        "VALUES (:subject_id, :at, :kind, :model_version, :room_id, :ends_at, :text, CAST(:source AS jsonb)) "
        "ON CONFLICT (subject_id, at, kind, model_version) DO UPDATE SET ends_at = EXCLUDED.ends_at, "
        "text = EXCLUDED.text, source = EXCLUDED.source, room_id = EXCLUDED.room_id")

    def write(rows: list[dict]) -> None:
        with engine.begin() as conn:
            conn.execute(sql, rows)

    return write


def start_narration(settings) -> NarrationStage:
    """The stage for a worker: the shared adapter-LLM, the worker's database role, the settings' bounds."""
    from models.llm.answer import SensorLLM
    from storage.lane import engine_from_settings

    llm = SensorLLM.shared()
    engine = engine_from_settings(settings, principal="worker")
    return NarrationStage(llm_narrator(llm), postgres_writer(engine), llm.version,
                          settings.workers.narration_queue, settings.workers.narration_batch)
