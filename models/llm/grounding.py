"""Grounded answers: the numbers come from stored rows, computed here in Python, never from the LLM.

Input is plain rows (dicts) as `storage.queries.StorageQueries` returns them (this module does not import
storage: models sit below it); output is the answer text plus what it rests on (time range, row counts,
model versions) and the numbers it states, so `faithful()` can check any text against them.

Question kinds, recognised by their words (a 135M model routes them worse than a few keywords do):
duration ("how long", "how much time"), count ("how many times", "how often"), current ("now", "right now",
"currently"), alerts ("alert", "fall"), otherwise a summary of the range. About a room, "how many people",
"occupied", "busy" and the like ask for its stored room states (`room_answer`). Comparisons between devices or
rooms (`comparison_answer`, `room_comparison_answer`) state each subject's stored numbers side by side.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime

ACTIVITY_WORDS = {  # words a question may use -> the stored label; longest first when matching
    "walking upstairs": "walking upstairs", "upstairs": "walking upstairs", "climbing": "walking upstairs",
    "walking downstairs": "walking downstairs", "downstairs": "walking downstairs",
    "walking": "walking", "walk": "walking", "sitting": "sitting", "sit": "sitting", "sat": "sitting", "seated": "sitting",
    "standing": "standing", "stand": "standing", "lying down": "lying down", "lying": "lying down",
    "lie": "lying down", "laying": "lying down",
}
MOVING = ("walking", "walking upstairs", "walking downstairs")  # what "more active" compares when no activity is named
MAX_QUESTION_CHARS = 2000
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def question_kind(question: str) -> str:
    q = question.lower()
    if "how long" in q or "how much time" in q or "minutes" in q or "duration" in q:
        return "duration"
    if "how many" in q or "how often" in q or "times" in q or "count" in q:
        return "count"
    if "alert" in q or "fall" in q or "alarm" in q:
        return "alerts"
    if re.search(r"\b(now|right now|currently|at the moment|doing)\b", q):
        return "current"
    return "summary"


def is_room_state_question(question: str) -> bool:
    return bool(re.search(r"\b(people|persons?|occupied|occupancy|empty|busy|crowded|in use|used for|air)\b",
                          question.lower()))


def activity_in(question: str) -> str | None:
    q = question.lower()
    for word in sorted(ACTIVITY_WORDS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(word)}\b", q):
            return ACTIVITY_WORDS[word]
    return None


def _seconds(row: dict, start: datetime, end: datetime) -> float:
    """The part of an episode inside [start, end)."""
    return max(0.0, (min(row["ended_at"], end) - max(row["started_at"], start)).total_seconds())


def episode_facts(episodes: list[dict], start: datetime, end: datetime) -> dict:
    """Per activity: seconds inside the range and number of episodes; the latest episode; what was used."""
    per = defaultdict(lambda: {"seconds": 0.0, "episodes": 0})
    for row in episodes:
        s = _seconds(row, start, end)
        if s <= 0:
            continue
        per[row["label"]]["seconds"] += s
        per[row["label"]]["episodes"] += 1
    latest = max(episodes, key=lambda r: r["ended_at"]) if episodes else None
    return {
        "start": start, "end": end, "activities": {k: dict(v) for k, v in per.items()},
        "latest": latest, "rows": len(episodes),
        "model_versions": sorted({r["model_version"] for r in episodes}),
    }


def fmt_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s} s" if s else f"{m} min"


def facts_text(facts: dict, alerts: list[dict] | None = None, max_items: int = 6) -> str:
    """Compact text of the facts for an LLM prompt (and for people): one clause per activity."""
    parts = [f"{label}: {fmt_duration(v['seconds'])} in {v['episodes']} episodes"
             for label, v in sorted(facts["activities"].items(), key=lambda kv: -kv[1]["seconds"])[:max_items]]
    text = "; ".join(parts) if parts else "no episodes"
    if alerts:
        text += f"; alerts: {len(alerts)} ({', '.join(sorted({a['kind'] for a in alerts}))})"
    return text


def grounded_answer(question: str, facts: dict, alerts: list[dict] | None = None, subject: str = "the device") -> dict:
    """{'answer', 'kind', 'activity', 'numbers'}: the answer to `question` from the facts alone."""
    kind, activity = question_kind(question), activity_in(question)
    acts = facts["activities"]
    span = f"between {facts['start']:%H:%M:%S} and {facts['end']:%H:%M:%S} UTC"
    numbers: list[float] = []
    if facts["rows"] == 0 and kind != "alerts":
        return {"answer": f"No activity was recorded for {subject} {span}, so I cannot answer from data.",
                "kind": kind, "activity": activity, "numbers": numbers}
    if kind in ("duration", "count") and activity is None:
        kind = "summary"
    if kind == "duration":
        seconds = acts.get(activity, {}).get("seconds", 0.0)
        numbers.append(round(seconds))
        answer = f"{subject} was {activity} for {fmt_duration(seconds)} {span}."
    elif kind == "count":
        count = acts.get(activity, {}).get("episodes", 0)
        numbers.append(count)
        answer = f"{subject} was {activity} {count} separate time{'s' if count != 1 else ''} {span}."
    elif kind == "alerts":
        alerts = alerts or []
        numbers.append(len(alerts))
        kinds = ", ".join(sorted({a["kind"] for a in alerts})) or "none"
        answer = f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''} for {subject} {span} (kinds: {kinds})."
    elif kind == "current":
        latest = facts["latest"]
        answer = (f"The latest stored episode of {subject} is {latest['label']}, from {latest['started_at']:%H:%M:%S} "
                  f"to {latest['ended_at']:%H:%M:%S} UTC.")
    else:
        answer = f"{subject} {span}: {facts_text(facts, alerts)}."
        numbers += [round(v["seconds"]) for v in acts.values()] + [v["episodes"] for v in acts.values()]
    return {"answer": answer[:1].upper() + answer[1:], "kind": kind, "activity": activity, "numbers": numbers}


def numbers_in(text: str) -> list[float]:
    return [float(x) for x in _NUMBER.findall(text)]


def _duration_forms(seconds: float) -> set[float]:
    s = round(seconds)
    return {float(s), float(s // 60), float(s % 60), round(s / 60, 1)}


def allowed_numbers(facts: dict, alerts: list[dict] | None = None, room: dict | None = None) -> set[float]:
    """Every number the facts (and a room's state facts) support, in the forms answers write them (seconds,
    minutes, clock parts)."""
    allowed: set[float] = {0.0, 1.0}
    for v in facts["activities"].values():
        allowed |= _duration_forms(v["seconds"]) | {float(v["episodes"])}
    if room and room["rows"]:
        allowed |= _duration_forms(room["occupied_s"]) | {float(room["rows"]), float(room["most_people"]),
                                                           float(round(room["latest"]["occupancy_count"]))}
        for seconds in room["uses"].values():
            allowed |= _duration_forms(seconds)
        for label in room["occupancies"]:  # the bins' own numbers ("2-4 people")
            allowed |= {abs(x) for x in numbers_in(label)}
        t = room["latest"]["window_end"]
        allowed |= {float(t.hour), float(t.minute), float(t.second)}
    allowed.add(float(len(alerts or [])))
    allowed.add(float(facts["rows"]))
    for t in [facts["start"], facts["end"]] + [facts["latest"][k] for k in ("started_at", "ended_at")
                                               if facts.get("latest")]:
        allowed |= {float(t.hour), float(t.minute), float(t.second)}
    return allowed


def faithful(text: str, facts: dict, alerts: list[dict] | None = None, room: dict | None = None) -> bool:
    """True when every number in `text` is one the stored facts support."""
    allowed = allowed_numbers(facts, alerts, room)
    return all(any(abs(n - a) < 1e-6 for a in allowed) for n in numbers_in(text))


def room_state_facts(states: list[dict], start: datetime, end: datetime, hop_s: float) -> dict:
    """From stored room states (one per window, `hop_s` apart): seconds occupied and per use, the most people,
    the latest state, what was used."""
    uses: dict[str, float] = defaultdict(float)
    for row in states:
        uses[row["room_use"]] += hop_s
    return {
        "start": start, "end": end, "rows": len(states),
        "occupied_s": hop_s * sum(bool(r["occupied"]) for r in states),
        "most_people": max((round(r["occupancy_count"]) for r in states), default=0),
        "uses": dict(uses), "occupancies": sorted({r["occupancy"] for r in states}),
        "latest": states[-1] if states else None,
        "model_versions": sorted({r["model_version"] for r in states}),
    }


def room_facts_text(facts: dict) -> str:
    if not facts["rows"]:
        return "no room states"
    uses = ", ".join(f"{u} {fmt_duration(s)}" for u, s in sorted(facts["uses"].items(), key=lambda kv: -kv[1]))
    return (f"occupied {fmt_duration(facts['occupied_s'])} of {facts['rows']} room-state windows; at most "
            f"{facts['most_people']} people; uses: {uses}")


def room_answer(facts: dict, subject: str) -> dict:
    """The answer to a room-state question from the stored states alone; the numbers it states."""
    span = f"between {facts['start']:%H:%M:%S} and {facts['end']:%H:%M:%S} UTC"
    if not facts["rows"]:
        return {"answer": f"No room state was recorded for {subject} {span}, so I cannot answer from data.",
                "numbers": []}
    latest = facts["latest"]
    count = round(latest["occupancy_count"])
    answer = (f"The latest room state of {subject} (to {latest['window_end']:%H:%M:%S} UTC) is {latest['occupancy']} "
              f"(about {count} people), {latest['room_use']}, air {latest['air_quality']}. {span[0].upper() + span[1:]}: "
              f"{room_facts_text(facts)}.")
    numbers = [count, round(facts["occupied_s"]), facts["rows"], facts["most_people"]]
    return {"answer": answer, "numbers": numbers}


def comparison_answer(question: str, facts_by_subject: dict[str, dict]) -> dict:
    """Devices side by side over one range: the seconds (or, for "how many times", the episodes) of the activity
    the question names, else the time moving (walking and stairs); who has the most. `facts_by_subject`: subject
    name -> episode_facts, the asked subject first."""
    activity, counting = activity_in(question), question_kind(question) == "count"
    first = next(iter(facts_by_subject.values()))
    span = f"between {first['start']:%H:%M:%S} and {first['end']:%H:%M:%S} UTC"
    what = activity or "moving (walking or on stairs)"
    per = {}
    for subject, facts in facts_by_subject.items():
        acts = facts["activities"]
        if counting and activity:
            per[subject] = acts.get(activity, {}).get("episodes", 0)
        else:
            per[subject] = round(sum(acts.get(a, {}).get("seconds", 0.0) for a in ((activity,) if activity else MOVING)))
    shown = (lambda v: f"{v} time{'s' if v != 1 else ''}") if counting and activity else fmt_duration
    parts = "; ".join(f"{subject} {shown(v)}" for subject, v in per.items())
    top = max(per.values())
    leaders = [subject for subject, v in per.items() if v == top]
    if top == 0:
        verdict = f"none of them was {what}"
    elif len(leaders) == 1:
        verdict = f"{leaders[0]} the most"
    else:
        verdict = f"{' and '.join(leaders)} equally, the most"
    no_data = [subject for subject, facts in facts_by_subject.items() if facts["rows"] == 0]
    note = f" No episodes were recorded for {', '.join(no_data)}." if no_data else ""
    answer = f"{what[0].upper() + what[1:]} {span}: {parts}: {verdict}.{note}"
    return {"answer": answer, "kind": "comparison", "activity": activity, "numbers": list(per.values()),
            "per_subject": per}


def room_comparison_answer(facts_by_room: dict[str, dict]) -> dict:
    """Rooms side by side over one range from their stored room states: time occupied and the most people."""
    first = next(iter(facts_by_room.values()))
    span = f"between {first['start']:%H:%M:%S} and {first['end']:%H:%M:%S} UTC"
    occupied = {room: round(f["occupied_s"]) for room, f in facts_by_room.items()}
    parts = "; ".join(f"{room} occupied {fmt_duration(occupied[room])}, at most {f['most_people']} people"
                      + ("" if f["rows"] else " (no room states)") for room, f in facts_by_room.items())
    top = max(occupied.values())
    leaders = [room for room, v in occupied.items() if v == top]
    verdict = ("none was occupied" if top == 0 else f"{leaders[0]} was occupied longest" if len(leaders) == 1
               else f"{' and '.join(leaders)} were occupied equally long")
    numbers = list(occupied.values()) + [f["most_people"] for f in facts_by_room.values()]
    return {"answer": f"{span[0].upper() + span[1:]}: {parts}: {verdict}.", "kind": "comparison", "activity": None,
            "numbers": numbers, "per_subject": occupied}
