"""`iotlm train llm-adapter`: fit the adapter on instruction data from the HAPT fit subjects.

The motion encoder and the LLM stay frozen; their sensor features are computed once. Each step: a batch of
examples, the answer's tokens scored by next-token cross-entropy through the top layers only (the lower
layers' states are cached per text). The step is chosen on the validation subjects' activity questions
(constrained choice accuracy); the test subjects are never loaded here.
Activity and yes/no questions carry the encoder classifier's reading of the window in front (`with_reading`,
70 % of them; the stream stores that reading as the window's prediction), so the adapter answers from the sensor
tokens and that reading together, and still answers without it.
Room questions (the env modality) come from simulated buildings, every answer of a kind equally often (the
buildings' own mix is four fifths empty rooms: trained on it, the adapter answered "empty" to nearly every
room at step 240, validation room macro-F1 0.28-0.49); a step is all motion or all room samples (`room_share`
of the steps), the room windows' features computed once like the motion ones. The step is
chosen on the mean of the validation activity, event and room questions' macro-F1 (validation buildings
200..205); the test buildings are never simulated here.
Event questions (a fall, a jump, a posture change, no event; models.events) come from HAPT's transitions and
activity windows and from simulated people (`sim_share` of the steps: falls and jumps exist only there); the
simulated test people (their own seed) are never simulated here either. Dialog examples put an activity
question and its answer before a yes/no follow-up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from models.datasets import HAPT_LABELS
from models.events import EVENTS, SIM_SEEDS, hapt_event_labels, simulated_event_windows
from models.llm.adapter import AdapterConfig, IoTLMAdapter
from models.llm.answer import DEFAULT_ADAPTER, SensorLLM
from models.llm.backbone import load_backbone
from models.llm.data import (FIT_SUBJECTS, ROOM_FIT_BUILDINGS, ROOM_QUESTIONS, ROOM_SYSTEM, ROOM_VALIDATION_BUILDINGS,
                             SYSTEM, TRANSITIONS, VALIDATION_SUBJECTS, YES_NO, answer_ids, event_examples, examples,
                             prompt_ids, room_answers, room_examples, room_windows, sensor_windows, with_reading)
from models.llm.modalities import DEFAULT_ENV_CHECKPOINT, DEFAULT_MOTION_CHECKPOINT, EnvModality, MotionModality
from models.metrics import classification_metrics

ADAPTER_VERSION = "iotlm-adapter-v2-1.3.0"


def stratified_rows(target: np.ndarray, n_classes: int, per_class: int, rng) -> np.ndarray:
    """Up to `per_class` random rows of every class present in `target`."""
    return np.concatenate([rng.permutation(np.flatnonzero(target == c))[:per_class] for c in range(n_classes)])


def choice_accuracy(llm: SensorLLM, features: np.ndarray, target: np.ndarray, labels: list[str], task: str,
                    question: str, limit: int, seed: int, modality: str = "motion", readings=None) -> dict:
    """Constrained-choice accuracy and macro-F1 of one question on a class-stratified subset of windows
    (`readings`: the classifier's label per window, put in front of the question)."""
    rng = np.random.default_rng(seed)
    rows = stratified_rows(target, len(labels), max(1, limit // len(labels)), rng)
    questions = [with_reading(question, None if readings is None else readings[r]) for r in rows]
    picked, _ = llm.choose(features[rows], task, questions, list(labels), modality=modality)
    y_pred = np.array([labels.index(p) for p in picked])
    present = sorted(set(target[rows].tolist()))  # macro-F1 over the classes these windows hold
    m = classification_metrics(target[rows], y_pred, list(labels))
    m["macro_f1"] = float(np.mean([m["per_class_f1"][labels[c]] for c in present]))
    return m


def validation_scores(llm: SensorLLM, motion, rooms, n_motion: int, n_room: int, seed: int, events=None) -> dict:
    """Validation activity (with the classifier's reading, as the product asks), events (simulated people and
    HAPT's windows together) and per-kind room figures; `score`: the mean of the activity, event and room
    macro-F1 (the ones present)."""
    out = {"activity": choice_accuracy(llm, motion["features"], motion["windows"].activity, list(HAPT_LABELS),
                                       "activity", "What is the person doing?", n_motion, seed,
                                       readings=motion["readings"])}
    if events is not None:
        out["event"] = choice_accuracy(llm, events["features"], events["event"], list(EVENTS), "event",
                                       "What happens in this window?", n_motion, seed)
    if rooms is not None:
        answers = room_answers()
        for kind, questions in ROOM_QUESTIONS.items():
            out[f"room_{kind}"] = choice_accuracy(llm, rooms["features"], getattr(rooms["windows"], kind),
                                                  answers[kind], "room", questions[0], n_room, seed, modality="env")
    room_f1 = [v["macro_f1"] for k, v in out.items() if k.startswith("room_")]
    parts = [out["activity"]["macro_f1"]] + ([out["event"]["macro_f1"]] if "event" in out else [])
    out["score"] = float(np.mean(parts + ([np.mean(room_f1)] if room_f1 else [])))
    return out


def train_llm_adapter(out: Path | None = None, steps: int = 600, batch_size: int = 12, lr: float = 2e-3,
                      seed: int = 0, motion_checkpoint: str = DEFAULT_MOTION_CHECKPOINT, llm: str | None = None,
                      env_checkpoint: str | None = DEFAULT_ENV_CHECKPOINT, room_share: float = 0.33,
                      room_windows_n: int = 8000, reading_share: float = 0.7, adapter_layers: int = 3,
                      sim_share: float = 0.12, sim_per_event: int = 150,
                      val_every: int = 120,
                      val_windows: int = 120, progress: bool = True) -> dict:
    from tqdm import tqdm

    torch.manual_seed(seed)
    out = Path(out or DEFAULT_ADAPTER)
    started = time.monotonic()
    backbone = load_backbone(llm)
    motion = MotionModality(motion_checkpoint)
    env = EnvModality(env_checkpoint) if env_checkpoint else None
    pins = {"motion": motion.pin()} | ({"env": env.pin()} if env else {})
    config = AdapterConfig(llm=backbone.name, adapter_layers=adapter_layers, modalities=pins)
    adapter = IoTLMAdapter(config, backbone)
    llm_view = SensorLLM(adapter, motion, {"version": ADAPTER_VERSION}, env)
    fit, val = sensor_windows(FIT_SUBJECTS), sensor_windows(VALIDATION_SUBJECTS)
    features = {"motion": motion.features(fit.acc, fit.gyro, fit.rate_hz, "waist")}
    val_motion = {"windows": val, "features": motion.features(val.acc, val.gyro, val.rate_hz, "waist"),
                  "readings": llm_view.readings(val.acc, val.gyro, val.rate_hz)}
    fit_readings = [HAPT_LABELS.index(r) for r in llm_view.readings(fit.acc, fit.gyro, fit.rate_hz)]
    train_sets = {"motion": examples(fit, seed, readings=np.array(fit_readings), reading_share=reading_share)}
    # simulated people for the events HAPT lacks (falls, jumps); validation events: simulated and HAPT together
    sim_fit = simulated_event_windows("fit", sim_per_event, progress=progress)
    sim_val = simulated_event_windows("validation", 30, progress=progress)
    train_sets["sim"] = event_examples(sim_fit, seed)
    features["sim"] = motion.features(sim_fit.acc, sim_fit.gyro, sim_fit.rate_hz, "waist")
    val_events = {"features": np.concatenate([motion.features(sim_val.acc, sim_val.gyro, sim_val.rate_hz, "waist"),
                                              val_motion["features"]]),
                  "event": np.concatenate([sim_val.event, hapt_event_labels(val.activity, val.transition)])}
    val_rooms = None
    if env is not None:
        fit_rooms = room_windows(ROOM_FIT_BUILDINGS, progress=progress)
        train_sets["env"] = room_examples(fit_rooms, room_windows_n, seed, balanced=True)
        features["env"] = np.zeros((len(fit_rooms), 1, env.feature_dim), np.float32)
        used = np.array(sorted({e.window for e in train_sets["env"]}))
        features["env"][used] = env.features(fit_rooms.x[used])
        vr = room_windows(ROOM_VALIDATION_BUILDINGS, progress=progress)
        val_rooms = {"windows": vr, "features": env.features(vr.x)}
    tok = backbone.tokenizer
    params = [p for p in adapter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    history, best, best_state = [], -1.0, None
    bar = tqdm(range(1, steps + 1), desc="llm-adapter", disable=not progress)
    rng = np.random.default_rng(seed)
    for step in bar:
        draw = rng.random()
        source = "env" if env is not None and draw < room_share else "sim" if draw > 1 - sim_share else "motion"
        modality = "env" if source == "env" else "motion"  # simulated windows are motion windows
        pool = train_sets[source]
        batch = [pool[int(i)] for i in rng.integers(0, len(pool), batch_size)]
        feats = {modality: torch.from_numpy(features[source][[e.window for e in batch]])}
        tasks = torch.tensor([config.tasks.index(e.task) for e in batch])
        adapter.train()
        adapter.set_prompts(feats, tasks)
        system = ROOM_SYSTEM if modality == "env" else SYSTEM
        seqs, froms = [], []
        for e in batch:
            prompt = prompt_ids(tok, e.question, system, e.history)
            seqs.append(prompt + answer_ids(tok, e.answer, backbone.end_id))
            froms.append(len(prompt))
        logp = adapter.token_logprobs(seqs, froms)
        loss = -torch.cat(logp).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        adapter.set_prompts(None, None)
        bar.set_postfix(loss=f"{loss.item():.3f}", on=source)
        if step % val_every == 0 or step == steps:
            adapter.eval()
            v = validation_scores(llm_view, val_motion, val_rooms, val_windows, val_windows // 2, seed, val_events)
            history.append({"step": step, "loss": float(loss.item()), "val_score": v["score"],
                            **{f"val_{k}_macro_f1": m["macro_f1"] for k, m in v.items() if k != "score"},
                            "val_activity_accuracy": v["activity"]["accuracy"]})
            bar.write(json.dumps(history[-1]))
            if v["score"] > best:
                best, best_state = v["score"], adapter.trainable_state()
    _load_state(adapter, best_state)
    adapter.eval()
    # the chosen step on fresh validation draws (another seed), and transitions
    final = validation_scores(llm_view, val_motion, val_rooms, 300, 120, seed + 1, val_events)
    final["activity_sensor_only"] = choice_accuracy(llm_view, val_motion["features"], val.activity, list(HAPT_LABELS),
                                                    "activity", "What is the person doing?", 300, seed + 1)
    final["transition"] = choice_accuracy(llm_view, val_motion["features"], val.transition, list(TRANSITIONS),
                                          "transition", "Which postural transition happens here?", 36, seed + 1)
    seconds = round(time.monotonic() - started, 1)
    meta = {
        "version": ADAPTER_VERSION,
        "kind": "IoT-LM multisensory multitask adapter (zero-gated adapter prompts + sensor tokens + LoRA)",
        "training": {
            "fit_subjects": list(FIT_SUBJECTS), "validation_subjects": list(VALIDATION_SUBJECTS),
            "room_fit_buildings": list(ROOM_FIT_BUILDINGS), "room_validation_buildings": list(ROOM_VALIDATION_BUILDINGS),
            "examples": {k: len(v) for k, v in train_sets.items()}, "fit_windows": len(fit),
            "simulated_event_seeds": {k: SIM_SEEDS[k] for k in ("fit", "validation")},
            "simulated_event_windows": {"fit": len(sim_fit), "validation": len(sim_val)},
            "steps": steps, "batch_size": batch_size, "lr": lr, "room_share": room_share if env else 0.0,
            "sim_share": sim_share,
            "reading_share": reading_share,
            "seed": seed, "seconds": seconds, "torch_threads": torch.get_num_threads(), "history": history,
            "selected_on": "mean of validation activity, event and room-question macro-F1 (constrained choice)",
        },
        "validation": {k: {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]} for k, v in final.items() if k != "score"},
        "answers": {"activity": list(HAPT_LABELS), "transition": list(TRANSITIONS), "yes_no": list(YES_NO),
                    "event": list(EVENTS),
                    **({f"room_{k}": v for k, v in room_answers().items()} if env else {})},
    }
    adapter.save(out, meta)
    return {"path": str(out), "seconds": seconds, "n_trainable_parameters": adapter.n_trainable(),
            "validation": meta["validation"]}


def _load_state(adapter: IoTLMAdapter, state: dict[str, torch.Tensor]) -> None:
    own = dict(adapter.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            own[name].copy_(value)
