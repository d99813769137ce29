"""Grounded questions about a device or a room: what `POST /v1/ask` and `iotlm ask` answer.

1. The time range asked (`since` seconds before `end`, default the last 10 minutes).
2. Storage rows for it: episodes and alerts (StorageQueries); their numbers become the answer
   (models.llm.grounding computes durations and counts in Python).
3. The recent sensor window enters the adapter-LLM as sensor tokens: a device's raw frames of the last 2.56 s
   answer "what is it doing now" by constrained choice among the activity names; a room's environment
   device's last 30 minutes (the room model's window) answer how many people are there and what the room is
   used for, by constrained choice among the room model's classes.
4. With `narrate`, the LLM also phrases the facts in one sentence; the sentence is kept only when every
   number in it is one the stored facts support (`faithful`), else it is dropped and the answer says so.
Every answer cites the range, the rows (count, model versions) and the LLM's versions. Instructions inside a
question never change where the numbers come from; a question that tries is answered from data and flagged.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import text

from models.llm.grounding import (comparison_answer, episode_facts, faithful, facts_text, grounded_answer,
                                  is_room_state_question, room_answer, room_comparison_answer, room_facts_text,
                                  room_state_facts)

INJECTION = re.compile(r"\b(ignore|disregard|forget|override|pretend|instead of (your|the) data|system prompt|"
                       r"jailbreak|you are now)\b", re.IGNORECASE)
MAX_SINCE_S = 7 * 86_400
MAX_COMPARED = 5  # other devices or rooms one question may compare with
RECENT_S = 2.56  # one motion window: what enters as sensor tokens


class AskError(ValueError):
    """A question that cannot be answered as asked (-> 4xx), with the reason in words."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def subject_known(engine, device_id: str | None, room_id: str | None) -> bool:
    """Registered, or has any stored result (a device replayed without registration still has rows)."""
    with engine.connect() as conn:
        if device_id:
            return bool(conn.execute(text(
                "SELECT EXISTS (SELECT 1 FROM devices WHERE id = :d) "
                "OR EXISTS (SELECT 1 FROM activity_episodes WHERE device_id = :d)"), {"d": device_id}).scalar())
        return bool(conn.execute(text(
            "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = :r) "
            "OR EXISTS (SELECT 1 FROM activity_episodes WHERE room_id = :r)"), {"r": room_id}).scalar())


def recent_window(engine, device_id: str, end: datetime) -> tuple[np.ndarray, np.ndarray | None, float, str] | None:
    """The last 2.56 s of the device's stored raw frames before `end`: (acc, gyro, rate, placement), or None."""
    from ingest.codec import decode

    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT payload FROM raw_frames WHERE device_id = :d AND t0 >= :lo AND t0 < :end ORDER BY t0, seq"),
            {"d": device_id, "lo": end - timedelta(seconds=RECENT_S + 2.0), "end": end}).fetchall()
    acc, gyro, rate, placement = [], [], None, "unknown"
    for (payload,) in rows:
        try:
            frame = decode(bytes(payload))
        except Exception:  # a stored frame that no longer decodes is skipped, not fatal
            continue
        if frame.imu is None or (rate is not None and frame.imu.rate_hz != rate):
            continue
        rate, placement = frame.imu.rate_hz, frame.placement or "unknown"
        acc.append(frame.imu.acc)
        gyro.append(frame.imu.gyro if frame.imu.gyro is not None else np.zeros_like(frame.imu.acc))
    if not acc:
        return None
    need = int(round(RECENT_S * rate))
    a, g = np.concatenate(acc)[-need:], np.concatenate(gyro)[-need:]
    if len(a) < need // 2:
        return None
    return a[None], g[None], float(rate), placement


def recent_room_window(engine, room_id: str, end: datetime) -> tuple[np.ndarray, str] | None:
    """The room model's window (1, N_INPUT, WINDOW_MIN) ending at `end`, cut from the stored env frames of
    the room's device heard last, and that device's id; None when the room has no env reports then."""
    from ingest.codec import decode
    from models.rooms.windows import CHANNELS, MAX_AGE_S, WINDOW_MIN, window_arrays

    lo = end - timedelta(seconds=WINDOW_MIN * 60.0 + MAX_AGE_S)
    with engine.connect() as conn:
        # the room's devices not registered as something else; the one whose newest frame is env and latest
        latest = conn.execute(text(
            "SELECT DISTINCT ON (r.device_id) r.device_id, r.t0, r.payload FROM raw_frames r "
            "JOIN devices d ON d.id = r.device_id WHERE d.room_id = :room AND (d.kind IS NULL OR d.kind = 'env') "
            "AND r.t0 >= :lo AND r.t0 < :end ORDER BY r.device_id, r.t0 DESC"),
            {"room": room_id, "lo": lo, "end": end}).fetchall()
        device = None
        for device_id, _t0, payload in sorted(latest, key=lambda row: row[1], reverse=True):
            try:
                if decode(bytes(payload)).env is not None:
                    device = device_id
                    break
            except Exception:
                continue
        if device is None:
            return None
        rows = conn.execute(text(
            "SELECT payload FROM raw_frames WHERE device_id = :d AND t0 >= :lo AND t0 < :end ORDER BY t0, seq"),
            {"d": device, "lo": lo, "end": end}).fetchall()
    times, readings = [], {name: [] for name in CHANNELS}
    for (payload,) in rows:
        try:
            frame = decode(bytes(payload))
        except Exception:  # a stored frame that no longer decodes is skipped, not fatal
            continue
        if frame.env is None:
            continue
        n = frame.env.n_samples
        times.append(frame.t0 + np.arange(n) / frame.env.rate_hz)
        for name in CHANNELS:
            column = frame.env.channels.get(name)
            readings[name].append(np.asarray(column, float) if column is not None else np.full(n, np.nan))
    if not times:
        return None
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    series = {name: np.concatenate(v)[order] for name, v in readings.items()}
    series = {name: v for name, v in series.items() if np.isfinite(v).any()}
    return window_arrays(t[order], series, np.array([end.timestamp()])), str(device)


def ask(engine, queries, question: str, *, device_id: str | None = None, room_id: str | None = None,
        since_s: float = 600.0, end: datetime | None = None, history: list[dict] | None = None,
        llm=None, narrate: bool = False, compare_with: list[str] | None = None) -> dict:
    """The grounded answer as a JSON-able dict. `llm`: a models.llm.answer.SensorLLM, a function giving one
    (called only once the question is known to be answerable: loading takes 20-30 s), or None (facts only).
    `compare_with`: other devices (or rooms, with `room_id`) to set beside the asked one over the same range."""
    started = time.perf_counter()
    question = (question or "").strip()
    if not question:
        raise AskError(422, "the question is empty: ask something, e.g. 'how long was it walking?'")
    if len(question) > 2000:
        raise AskError(422, f"the question has {len(question)} characters; at most 2000")
    if (device_id is None) == (room_id is None):
        raise AskError(422, "give exactly one of device_id or room_id")
    if not 0 < since_s <= MAX_SINCE_S:
        raise AskError(422, f"since must be between 1 s and {MAX_SINCE_S // 86_400} days")
    compare_with = list(dict.fromkeys(compare_with or []))
    if len(compare_with) > MAX_COMPARED:
        raise AskError(422, f"compare with at most {MAX_COMPARED} others, not {len(compare_with)}")
    if (device_id or room_id) in compare_with:
        raise AskError(422, "a subject cannot be compared with itself")
    for other in [device_id or room_id, *compare_with]:
        if not subject_known(engine, other if device_id else None, other if room_id else None):
            what = f"device {other!r}" if device_id else f"room {other!r}"
            raise AskError(404, f"unknown {what}: not registered and no stored results")
    end = end or datetime.now(timezone.utc)
    start = end - timedelta(seconds=since_s)
    subject = f"device {device_id}" if device_id else f"room {room_id}"
    episodes = queries.episodes(start, end, device_id=device_id, room_id=room_id)
    alerts = queries.alerts(start, end, device_id=device_id, room_id=room_id)
    # a follow-up ("and how many times?") keeps the activity of the turn before when it names none
    asked = question
    if history:
        from models.llm.grounding import activity_in

        if activity_in(question) is None:
            earlier = [activity_in(turn.get("content", "")) for turn in history if turn.get("role") == "user"]
            earlier = [a for a in earlier if a]
            if earlier:
                asked = f"{question} ({earlier[-1]})"
    facts = episode_facts(episodes, start, end)
    result = grounded_answer(asked, facts, alerts, subject)
    answer = {
        "question": question,
        "answer": result["answer"],
        "kind": result["kind"],
        "activity": result["activity"],
        "numbers": result["numbers"],
        "range": {"start": start.isoformat(), "end": end.isoformat()},
        "cites": {"episodes": facts["rows"], "alerts": len(alerts), "model_versions": facts["model_versions"],
                  "facts": facts_text(facts, alerts)},
        "ignored_instructions": bool(INJECTION.search(question)),
    }
    room = None
    if room_id:
        from models.rooms.windows import HOP_MIN

        room = room_state_facts(queries.room_states(start, end, room_id), start, end, HOP_MIN * 60.0)
        answer["cites"]["room_states"] = room["rows"]
        answer["cites"]["model_versions"] = sorted(set(answer["cites"]["model_versions"]) | set(room["model_versions"]))
        answer["cites"]["facts"] += f"; room: {room_facts_text(room)}"
        # a question about the room itself, or one the wearables' episodes cannot answer: its room states
        if is_room_state_question(question) or (facts["rows"] == 0 and room["rows"]):
            stated = room_answer(room, subject)
            answer |= {"answer": stated["answer"], "kind": "room_state", "numbers": stated["numbers"]}
    if compare_with:  # side by side over the same range, each subject's own stored rows
        if device_id:
            per = {f"device {d}": episode_facts(queries.episodes(start, end, device_id=d), start, end)
                   for d in compare_with}
            compared = comparison_answer(asked, {subject: facts} | per)
        else:
            from models.rooms.windows import HOP_MIN

            per = {f"room {r}": room_state_facts(queries.room_states(start, end, r), start, end, HOP_MIN * 60.0)
                   for r in compare_with}
            compared = room_comparison_answer({subject: room} | per)
        answer |= {"answer": compared["answer"], "kind": "comparison", "activity": compared["activity"],
                   "numbers": compared["numbers"], "compared": compared["per_subject"]}
        answer["cites"]["compared_rows"] = {name: f["rows"] for name, f in per.items()}
        answer["cites"]["model_versions"] = sorted(set(answer["cites"]["model_versions"]).union(
            *(f["model_versions"] for f in per.values())))
    if answer["ignored_instructions"]:
        answer["answer"] += " (Answered from stored data only; instructions in the question were not followed.)"
    if callable(llm):
        llm = llm()
    if llm is not None:
        answer["llm"] = dict(llm.versions)
        reads_events = "event" in llm.adapter.config.tasks
        if device_id and not compare_with and (result["kind"] in ("current", "summary")
                                               or (result["kind"] == "alerts" and reads_events)):
            window = recent_window(engine, device_id, end)
            if window is not None:
                acc, gyro, rate, placement = window
                features = llm.features(acc, gyro, rate, placement)
                if result["kind"] == "alerts":  # "did it fall?": what the last window holds, beside the stored alerts
                    event = llm.events(features)[0]
                    answer["sensor_event"] = event
                    answer["answer"] += f" The last {RECENT_S} s of its sensor data show {event} (adapter-LLM)."
                else:
                    picked = llm.activity(features, llm.readings(acc, gyro, rate, placement))
                    answer["sensor_now"] = picked[0]
                    answer["answer"] += f" The last {RECENT_S} s of its sensor data look like {picked[0]} (adapter-LLM)."
        if room_id and llm.env is not None and answer["kind"] in ("current", "summary", "room_state"):
            window = recent_room_window(engine, room_id, end)
            if window is not None:
                from models.llm.data import ROOM_QUESTIONS, room_answers

                x, env_device = window
                features = llm.env.features(x)
                answers = room_answers()
                reading = {kind: llm.choose(features, "room", [ROOM_QUESTIONS[kind][0]], answers[kind],
                                            modality="env")[0][0] for kind in ("occupancy", "use")}
                answer["sensor_now"] = reading | {"device": env_device}
                answer["answer"] += (f" Its environment sensors over the last 30 minutes look like "
                                     f"{reading['occupancy']}, {reading['use']} (adapter-LLM).")
        if narrate:
            prompt = (f"Facts about {subject} between {start:%H:%M:%S} and {end:%H:%M:%S} UTC: "
                      f"{answer['cites']['facts']}. Question: {question[:300]}\nAnswer in one sentence using only the facts.")
            sentence = llm.generate([[{"role": "user", "content": prompt}]], "dialog", max_new_tokens=40)[0]
            answer["llm_faithful"] = faithful(sentence, facts, alerts, room)
            answer["llm_sentence"] = sentence if answer["llm_faithful"] else None
    answer["seconds"] = round(time.perf_counter() - started, 3)
    return answer
