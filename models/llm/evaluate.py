"""`iotlm eval --dataset hapt --setting llm-qa`: the adapter-LLM against the encoder's own classifier, on the
held-out HAPT test subjects, per question type, on the same windows.

- activity: "what is the person doing?" (four wordings), answered by constrained choice among the six names,
  the question carrying the classifier's reading of the window (as the ask path does: the stream stores it as
  the window's prediction), and without it (`llm_sensor_tokens_only`); the classifier: the adapter's frozen
  motion encoder scoring the same six names (its fine-tuned head).
- yes_no: "is the person <activity>?", half true; the classifier says yes when its top label is the one asked.
- transition: which of the six postural transitions a window holds; the classifier scores the six phrases
  zero-shot (it was never trained on transitions).
- duration / count: "how long / how many times was the person <activity>?" over 5-minute stretches of the
  test recordings. The facts are the episodes the stream would store (the classifier's windows merged per
  label, one hop each); the answer comes from them (models.llm.grounding); it is scored against the labelled
  truth (duration within 20 % or 10 s, count exact). Faithfulness: share of answers whose numbers all match the
  facts; also for the LLM's own one-sentence phrasing of the same facts (`llm_sentence`), which is the figure
  that can fail.
- room_occupancy / room_use / room_air: "how many people are in the room?" and the like about 30-minute windows
  of the held-out simulated test buildings 500..511, answered by constrained choice among the room model's own
  classes; the classifier: the room model (rooms-v1, the adapter's frozen env encoder) on the same windows.
- event (HAPT test subjects: their transitions and activity windows) and event_simulated (simulated test people,
  seed models.events.SIM_SEEDS["test"], 60 windows per answer, falls and jumps included): "what happens in this
  window?" among models.events.EVENTS; the classifier scores the source names (HAPT's activities and transitions,
  or the simulator's activity names) and its top name is mapped to its event. `fall`: the same simulated windows
  as a fall / no-fall question: the LLM's event answer, the classifier's, and the stream's own fall rule
  (free fall then impact, models.events.free_fall_impact, at the worker's default thresholds).
- dialog: the activity question, the LLM's own answer, then "And is the person <activity>?" (half true) in the
  same conversation; the classifier says yes when its top label is the one asked.
Latency: single answers (one window, all choices scored), p50 / p95 seconds on this CPU.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np

from models.datasets import HAPT_LABELS
from models.events import (EVENTS, FALL, HAPT_TRANSITION_EVENTS, SIM_EVENTS, SIM_PLAIN, free_fall_impact,
                           hapt_event_labels, simulated_event_windows)
from models.llm.data import (ACTIVITY_QUESTIONS, ROOM_QUESTIONS, ROOM_TEST_BUILDINGS, TEST_SUBJECTS, TRANSITIONS,
                             asked_activity, room_answers, room_windows, sensor_windows, with_reading)
from models.metrics import classification_metrics

HOP_S = 1.28


def _stratified(target: np.ndarray, n_classes: int, per_class: int | None, rng) -> np.ndarray:
    rows = [rng.permutation(np.flatnonzero(target == c))[:per_class] for c in range(n_classes)]
    return np.sort(np.concatenate(rows))


def _episodes(labels: list[str], t0: datetime, model_version: str) -> list[dict]:
    """Consecutive equal window labels -> episode rows as storage holds them (each window one hop)."""
    out = []
    for i, label in enumerate(labels):
        start = t0 + timedelta(seconds=i * HOP_S)
        if out and out[-1]["label"] == label:
            out[-1]["ended_at"] = start + timedelta(seconds=HOP_S)
            out[-1]["windows"] += 1
        else:
            out.append({"label": label, "started_at": start, "ended_at": start + timedelta(seconds=HOP_S),
                        "windows": 1, "model_version": model_version, "device_id": "replay"})
    return out


def _range_questions(llm, rng, span_windows: int = 234, narrate: int = 12) -> dict:
    """duration/count questions over stretches of the test recordings (5 min = 234 hops)."""
    from ingest.hapt import load_hapt
    from models.llm.grounding import episode_facts, facts_text, faithful, grounded_answer

    classifier = llm.motion.classifier
    results = {"duration": [], "count": []}
    sentences = []
    for rec in load_hapt(TEST_SUBJECTS):
        starts = np.arange(0, len(rec.labels) - 128 + 1, 64)
        idx = starts[:, None] + np.arange(128)
        lab = rec.labels[idx]
        pure = (lab == lab[:, :1]).all(1) & (lab[:, 0] >= 1) & (lab[:, 0] <= 6)
        probs = classifier.predict_proba(rec.acc[idx], rec.gyro[idx], 50.0, list(HAPT_LABELS), "waist")
        predicted = [HAPT_LABELS[i] for i in probs.argmax(1)]
        truth = [HAPT_LABELS[int(v[0]) - 1] if p else "other" for v, p in zip(lab, pure)]
        for s0 in range(0, max(1, len(predicted) - span_windows + 1), span_windows):
            t0 = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
            start, end = t0, t0 + timedelta(seconds=span_windows * HOP_S)
            facts = episode_facts(_episodes(predicted[s0 : s0 + span_windows], t0, classifier.version), start, end)
            true_facts = episode_facts(_episodes(truth[s0 : s0 + span_windows], t0, "labels"), start, end)
            activity = str(rng.choice(HAPT_LABELS))
            for kind, question in (("duration", f"How long was the person {activity}?"),
                                   ("count", f"How many times was the person {activity}?")):
                answer = grounded_answer(question, facts, subject="the person")
                true = true_facts["activities"].get(activity, {"seconds": 0.0, "episodes": 0})
                got = answer["numbers"][0]
                correct = (abs(got - true["seconds"]) <= max(10.0, 0.2 * true["seconds"]) if kind == "duration"
                           else got == true["episodes"])
                results[kind].append({"correct": bool(correct), "faithful": faithful(answer["answer"], facts)})
            if len(sentences) < narrate:
                sentences.append((facts, f"Facts: {facts_text(facts)}. Question: How long was the person {activity}? "
                                         "Answer in one sentence using only the facts."))
    started = time.perf_counter()
    lines = llm.generate([[{"role": "user", "content": p}] for _, p in sentences], "dialog", max_new_tokens=40)
    sentence_s = time.perf_counter() - started
    out = {kind: {"questions": len(r), "accuracy": float(np.mean([x["correct"] for x in r])) if r else None,
                  "faithfulness": float(np.mean([x["faithful"] for x in r])) if r else None}
           for kind, r in results.items()}
    out["llm_sentence"] = {"answers": len(lines), "faithfulness": float(np.mean([faithful(l, f) for (f, _), l in
                                                                               zip(sentences, lines)])),
                           "seconds_per_batch": round(sentence_s, 2), "examples": lines[:3]}
    return out


def _room_questions(llm, per_class: int | None, rng, progress: bool) -> dict:
    """Room questions on the test buildings' windows (every 5 minutes, as `iotlm eval --dataset rooms`)."""
    rooms = room_windows(ROOM_TEST_BUILDINGS, hop_min=5, progress=progress)
    answers = room_answers()
    out = {}
    for kind, questions in ROOM_QUESTIONS.items():
        target = getattr(rooms, kind)
        labels = answers[kind]
        rows = _stratified(target, len(labels), per_class, rng)
        picked, _ = llm.choose(llm.env.features(rooms.x[rows]), "room", [questions[0]] * len(rows), labels,
                               modality="env")
        llm_pred = np.array([labels.index(p) for p in picked])
        p = llm.env.model.predict(rooms.x[rows])
        cls_pred = {"occupancy": p["occupancy_bin"], "use": p["use_index"], "air": p["air"].argmax(1)}[kind]
        out[f"room_{kind}"] = {"windows": len(rows), "buildings": list(ROOM_TEST_BUILDINGS),
                               "llm": _metrics(target[rows], llm_pred, labels),
                               "classifier": _metrics(target[rows], cls_pred, labels),
                               "agreement": float((llm_pred == cls_pred).mean())}
    return out


def _event_questions(llm, windows, features, rows, progress: bool) -> dict:
    """Events on the HAPT test windows `rows` and on simulated test people; the fall question on the latter."""
    out = {}
    classifier = llm.motion.classifier
    y = hapt_event_labels(windows.activity[rows], windows.transition[rows])
    names = list(HAPT_LABELS) + list(TRANSITIONS)
    to_event = [EVENTS.index("no event")] * len(HAPT_LABELS) + [EVENTS.index(e) for e in HAPT_TRANSITION_EVENTS]
    cls = np.array(to_event)[classifier.predict_proba(windows.acc[rows], windows.gyro[rows], windows.rate_hz, names,
                                                      "waist").argmax(1)]
    llm_pred = np.array([EVENTS.index(p) for p in llm.events(features[rows])])
    present = [EVENTS[c] for c in sorted(set(y.tolist()))]  # HAPT has no falls or jumps
    out["event"] = {"windows": len(rows), "answers_present": present,
                    "llm": _metrics(y, llm_pred, EVENTS), "classifier": _metrics(y, cls, EVENTS),
                    "note": "macro-F1 over the seven answers; falls and jumps never occur in HAPT (see event_simulated)"}
    sim = simulated_event_windows("test", 60, progress=progress)
    sim_features = llm.features(sim.acc, sim.gyro, sim.rate_hz, "waist")
    llm_sim = np.array([EVENTS.index(p) for p in llm.events(sim_features)])
    names = list(SIM_EVENTS) + list(SIM_PLAIN)
    to_event = [EVENTS.index(SIM_EVENTS.get(n, "no event")) for n in names]
    cls_sim = np.array(to_event)[classifier.predict_proba(sim.acc, sim.gyro, sim.rate_hz, names, "waist").argmax(1)]
    out["event_simulated"] = {"windows": len(sim), "seed": "models.events.SIM_SEEDS['test']",
                              "llm": _metrics(sim.event, llm_sim, EVENTS), "classifier": _metrics(sim.event, cls_sim, EVENTS)}
    from iotlm.settings import WorkerSettings

    config = WorkerSettings()
    rule = np.array([free_fall_impact(a, sim.rate_hz, config.fall_freefall_g, config.fall_impact_g) is not None
                     for a in sim.acc])
    fell = sim.event == FALL
    out["fall"] = {"windows": len(sim), "falls": int(fell.sum()),
                   "llm": _metrics(fell.astype(int), (llm_sim == FALL).astype(int), ["no", "yes"]),
                   "classifier": _metrics(fell.astype(int), (cls_sim == FALL).astype(int), ["no", "yes"]),
                   "fall_rule": _metrics(fell.astype(int), rule.astype(int), ["no", "yes"]),
                   "fall_rule_thresholds_g": [config.fall_freefall_g, config.fall_impact_g],
                   "fall_rule_on_jumps": float(rule[sim.event == EVENTS.index("a jump")].mean())}
    return out


def _dialog(llm, features, y, first_answers, readings, rng) -> dict:
    """Second turns: "And is the person <activity>?" after the activity question and the LLM's own answer."""
    asked = np.array([asked_activity(c, rng) for c in y])
    histories = [({"role": "user", "content": with_reading("What is the person doing?", r)},
                  {"role": "assistant", "content": a}) for r, a in zip(readings, first_answers)]
    questions = [f"And is the person {HAPT_LABELS[a]}?" for a in asked]
    picked, _ = llm.choose(features, "dialog", questions, ["yes", "no"], histories=histories)
    truth = (asked == y).astype(int)
    cls_yes = np.array([HAPT_LABELS.index(r) for r in readings]) == asked
    return {"windows": len(y), "positives": int(truth.sum()),
            "llm": _metrics(truth, np.array([p == "yes" for p in picked]).astype(int), ["no", "yes"]),
            "classifier": _metrics(truth, cls_yes.astype(int), ["no", "yes"])}


def run_llm_qa(adapter: str | None = None, per_class: int | None = 50, seed: int = 0, latency_answers: int = 20,
               room_per_class: int | None = 30, progress: bool = True) -> dict:
    import torch

    from models.llm.answer import SensorLLM

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    llm = SensorLLM.load(adapter)
    windows = sensor_windows(TEST_SUBJECTS)
    features = llm.features(windows.acc, windows.gyro, windows.rate_hz, "waist")
    classifier = llm.motion.classifier
    report: dict = {"dataset": "hapt", "setting": "llm-qa", "test_subjects": list(TEST_SUBJECTS),
                    "adapter": llm.versions, "seed": seed, "per_class": per_class, "question_types": {}}

    # activity and yes/no on the same stratified activity windows
    rows = _stratified(windows.activity, len(HAPT_LABELS), per_class, rng)
    y = windows.activity[rows]
    questions = [ACTIVITY_QUESTIONS[i % len(ACTIVITY_QUESTIONS)] for i in range(len(rows))]
    probs = classifier.predict_proba(windows.acc[rows], windows.gyro[rows], windows.rate_hz, list(HAPT_LABELS), "waist")
    cls_pred = probs.argmax(1)
    readings = [HAPT_LABELS[i] for i in cls_pred]  # what the stream stores as these windows' predictions
    picked, _ = llm.choose(features[rows], "activity", [with_reading(q, r) for q, r in zip(questions, readings)],
                           list(HAPT_LABELS))
    llm_pred = np.array([HAPT_LABELS.index(p) for p in picked])
    picked, _ = llm.choose(features[rows], "activity", questions, list(HAPT_LABELS))
    sensor_only = np.array([HAPT_LABELS.index(p) for p in picked])
    report["question_types"]["activity"] = {
        "windows": len(rows),
        "llm": _metrics(y, llm_pred, HAPT_LABELS), "classifier": _metrics(y, cls_pred, HAPT_LABELS),
        "agreement": float((llm_pred == cls_pred).mean()),
        "llm_sensor_tokens_only": _metrics(y, sensor_only, HAPT_LABELS),
        "note": "llm: the question carries the classifier's reading of the window (the product's ask path); "
                "llm_sensor_tokens_only: the same question without it"}
    asked = np.array([asked_activity(c, rng) for c in y])
    truth_yes = asked == y
    asked_names = [HAPT_LABELS[a] for a in asked]
    llm_yes = np.array(llm.is_doing(features[rows], asked_names, readings))  # what the product answers
    picked, _ = llm.choose(features[rows], "yes_no", [f"Is the person {n}?" for n in asked_names], ["yes", "no"])
    direct_yes = np.array([p == "yes" for p in picked])  # "yes" vs "no" scored directly: kept for the record
    cls_yes = cls_pred == asked
    report["question_types"]["yes_no"] = {
        "windows": len(rows), "positives": int(truth_yes.sum()),
        "llm": _metrics(truth_yes.astype(int), llm_yes.astype(int), ["no", "yes"]),
        "llm_direct_yes_no_scoring": _metrics(truth_yes.astype(int), direct_yes.astype(int), ["no", "yes"]),
        "classifier": _metrics(truth_yes.astype(int), cls_yes.astype(int), ["no", "yes"])}

    # postural transitions
    rows_t = _stratified(windows.transition, len(TRANSITIONS), per_class, rng)
    y_t = windows.transition[rows_t]
    picked, _ = llm.choose(features[rows_t], "transition", ["Which postural transition happens here?"] * len(rows_t),
                           list(TRANSITIONS))
    llm_t = np.array([TRANSITIONS.index(p) for p in picked])
    cls_t = classifier.predict_proba(windows.acc[rows_t], windows.gyro[rows_t], windows.rate_hz, list(TRANSITIONS),
                                     "waist").argmax(1)
    report["question_types"]["transition"] = {
        "windows": len(rows_t), "llm": _metrics(y_t, llm_t, TRANSITIONS), "classifier": _metrics(y_t, cls_t, TRANSITIONS),
        "note": "the classifier scores transition phrases zero-shot: it never saw a transition label"}

    # dialog and events draw from their own generator: the other question types keep their windows
    report["question_types"]["dialog"] = _dialog(llm, features[rows], y, [HAPT_LABELS[i] for i in llm_pred],
                                                 readings, np.random.default_rng(seed + 1))
    if "event" in llm.adapter.config.tasks:
        rows_e = np.concatenate([rows, rows_t])  # the activity windows ("no event") and the transition windows
        report["question_types"].update(_event_questions(llm, windows, features, rows_e, progress))
    if llm.env is not None:
        report["question_types"].update(_room_questions(llm, room_per_class, rng, progress))

    # duration / count from the episodes the stream would store; faithfulness
    report["question_types"].update(_range_questions(llm, rng))

    # single-answer latency: one window, all six choices, as the ask path does it
    times = []
    for r in rows[:latency_answers]:
        t = time.perf_counter()
        llm.choose(features[r : r + 1], "activity", ["What is the person doing?"], list(HAPT_LABELS))
        times.append(time.perf_counter() - t)
    report["latency_s"] = {"answers": len(times), "p50": float(np.percentile(times, 50)),
                           "p95": float(np.percentile(times, 95)), "torch_threads": torch.get_num_threads()}
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def _metrics(y_true, y_pred, labels) -> dict:
    m = classification_metrics(np.asarray(y_true), np.asarray(y_pred), list(labels))
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "per_class_f1": m["per_class_f1"]}
