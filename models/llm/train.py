"""`iotlm train llm-adapter`: fit the adapter on instruction data from the HAPT fit subjects.

The motion encoder and the LLM stay frozen; their sensor features are computed once. Each step: a batch of
examples, the answer's tokens scored by next-token cross-entropy through the top layers only (the lower
layers' states are cached per text). The step is chosen on the validation subjects' activity questions
(constrained choice accuracy); the test subjects are never loaded here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from models.datasets import HAPT_LABELS
from models.llm.adapter import AdapterConfig, IoTLMAdapter
from models.llm.answer import DEFAULT_ADAPTER, SensorLLM
from models.llm.backbone import load_backbone
from models.llm.data import (FIT_SUBJECTS, TRANSITIONS, VALIDATION_SUBJECTS, YES_NO, answer_ids, examples,
                             prompt_ids, sensor_windows)
from models.llm.modalities import DEFAULT_MOTION_CHECKPOINT, MotionModality
from models.metrics import classification_metrics

ADAPTER_VERSION = "iotlm-adapter-v1-1.0.0"


def choice_accuracy(llm: SensorLLM, features: np.ndarray, windows, kind: str, limit: int, seed: int) -> dict:
    """Constrained-choice accuracy and macro-F1 of one question kind on (a class-stratified subset of) windows."""
    rng = np.random.default_rng(seed)
    target = windows.activity if kind in ("activity", "yes_no") else windows.transition
    labels = HAPT_LABELS if kind in ("activity", "yes_no") else TRANSITIONS
    per_class = max(1, limit // len(labels))
    rows = np.concatenate([rng.permutation(np.flatnonzero(target == c))[:per_class] for c in range(len(labels))])
    question = "What is the person doing?" if kind == "activity" else "Which postural transition happens here?"
    picked, _ = llm.choose(features[rows], kind, [question] * len(rows), list(labels))
    y_pred = np.array([labels.index(p) for p in picked])
    return classification_metrics(target[rows], y_pred, list(labels))


def train_llm_adapter(out: Path | None = None, steps: int = 160, batch_size: int = 12, lr: float = 2e-3,
                      seed: int = 0, motion_checkpoint: str = DEFAULT_MOTION_CHECKPOINT, llm: str | None = None,
                      adapter_layers: int = 3, val_every: int = 80, val_windows: int = 60,
                      progress: bool = True) -> dict:
    from tqdm import tqdm

    torch.manual_seed(seed)
    out = Path(out or DEFAULT_ADAPTER)
    started = time.monotonic()
    backbone = load_backbone(llm)
    motion = MotionModality(motion_checkpoint)
    config = AdapterConfig(llm=backbone.name, adapter_layers=adapter_layers, modalities={"motion": motion.pin()})
    adapter = IoTLMAdapter(config, backbone)
    fit, val = sensor_windows(FIT_SUBJECTS), sensor_windows(VALIDATION_SUBJECTS)
    fit_features = motion.features(fit.acc, fit.gyro, fit.rate_hz, "waist")
    val_features = motion.features(val.acc, val.gyro, val.rate_hz, "waist")
    train_set = examples(fit, seed)
    llm_view = SensorLLM(adapter, motion, {"version": ADAPTER_VERSION})
    tok = backbone.tokenizer
    params = [p for p in adapter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    history, best, best_state = [], -1.0, None
    bar = tqdm(range(1, steps + 1), desc="llm-adapter", disable=not progress)
    rng = np.random.default_rng(seed)
    for step in bar:
        batch = [train_set[int(i)] for i in rng.integers(0, len(train_set), batch_size)]
        feats = {"motion": torch.from_numpy(fit_features[[e.window for e in batch]])}
        tasks = torch.tensor([config.tasks.index(e.task) for e in batch])
        adapter.train()
        adapter.set_prompts(feats, tasks)
        seqs, froms = [], []
        for e in batch:
            prompt = prompt_ids(tok, e.question)
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
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % val_every == 0 or step == steps:
            adapter.eval()
            m = choice_accuracy(llm_view, val_features, val, "activity", val_windows, seed)
            history.append({"step": step, "loss": float(loss.item()), "val_activity_accuracy": m["accuracy"],
                            "val_activity_macro_f1": m["macro_f1"]})
            bar.write(json.dumps(history[-1]))
            if m["macro_f1"] > best:
                best, best_state = m["macro_f1"], adapter.trainable_state()
    _load_state(adapter, best_state)
    adapter.eval()
    val_metrics = {kind: choice_accuracy(llm_view, val_features, val, kind, n, seed + 1)
                   for kind, n in (("activity", 120), ("transition", 36))}
    seconds = round(time.monotonic() - started, 1)
    meta = {
        "version": ADAPTER_VERSION,
        "kind": "IoT-LM multisensory multitask adapter (zero-gated adapter prompts + sensor tokens + LoRA)",
        "training": {
            "fit_subjects": list(FIT_SUBJECTS), "validation_subjects": list(VALIDATION_SUBJECTS),
            "examples": len(train_set), "fit_windows": len(fit), "steps": steps, "batch_size": batch_size, "lr": lr,
            "seed": seed, "seconds": seconds, "torch_threads": torch.get_num_threads(), "history": history,
            "selected_on": "validation activity macro-F1 (constrained choice)",
        },
        "validation": {k: {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]} for k, v in val_metrics.items()},
        "answers": {"activity": list(HAPT_LABELS), "transition": list(TRANSITIONS), "yes_no": list(YES_NO)},
    }
    adapter.save(out, meta)
    return {"path": str(out), "seconds": seconds, "n_trainable_parameters": adapter.n_trainable(),
            "validation": meta["validation"]}


def _load_state(adapter: IoTLMAdapter, state: dict[str, torch.Tensor]) -> None:
    own = dict(adapter.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            own[name].copy_(value)
