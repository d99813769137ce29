"""`iotlm bench llm`: the adapter-LLM's answer latency and the narration stage's throughput on this CPU.

- answer latency: one question about one window, as `POST /v1/ask` does it (motion features of the stored
  window, then the six activity names scored by the adapter-LLM); and the optional one-sentence phrasing
  (`narrate`, greedy, up to 40 tokens). p50 / p95 over `answers` questions on HAPT validation windows.
- narration: closed episodes from the HAPT validation subjects (the classifier's windows through the workers'
  EpisodeTracker) offered to the real NarrationStage (batched generation, bounded queue) as fast as it takes
  them; lines per second, and from the episode rate of a replayed device, how many devices' episodes one
  worker's stage keeps up with, and the fraction it keeps at the demo's 9 devices.
Writes benchmarks/results/llm.json and appends a section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import time

import numpy as np


def _episodes(classifier, subjects):
    from ingest.hapt import load_hapt
    from models.datasets import HAPT_LABELS
    from stream_workers.episodes import EpisodeTracker
    from stream_workers.records import WindowResult

    closed, seconds = [], 0.0
    for rec in load_hapt(subjects):
        starts = np.arange(0, len(rec.acc) - 128 + 1, 64)
        idx = starts[:, None] + np.arange(128)
        probs = classifier.predict_proba(rec.acc[idx], rec.gyro[idx], 50.0, list(HAPT_LABELS), "waist")
        tracker = EpisodeTracker(2, max_gap_s=5.12)
        device = f"s{rec.subject}-e{rec.experiment}"
        for s, p in zip(starts, probs):
            w0 = 1_700_000_000 + s / 50.0
            r = WindowResult(device, w0, w0 + 2.56, classifier.version, HAPT_LABELS[int(p.argmax())], float(p.max()), {})
            closed += [e for e in tracker.update(r) if e.closed]
        seconds += len(rec.acc) / 50.0
    return closed, seconds


def run(answers: int = 20, narration_items: int = 32, batch_size: int = 8, threads: int = 2, progress=None) -> dict:
    import torch

    from models.datasets import HAPT_LABELS
    from models.llm.answer import SensorLLM
    from models.llm.data import VALIDATION_SUBJECTS, sensor_windows
    from stream_workers.narration import NarrationStage, llm_narrator

    torch.set_num_threads(threads)
    t = time.perf_counter()
    llm = SensorLLM.shared()
    load_s = time.perf_counter() - t
    windows = sensor_windows(VALIDATION_SUBJECTS[:2])
    rows = np.random.default_rng(0).permutation(np.flatnonzero(windows.activity >= 0))[:answers]
    choose, phrase = [], []
    for k, r in enumerate(rows):
        t = time.perf_counter()
        features = llm.features(windows.acc[r : r + 1], windows.gyro[r : r + 1], 50.0, "waist")
        llm.choose(features, "activity", ["What is the person doing?"], list(HAPT_LABELS))
        choose.append(time.perf_counter() - t)
        if k < max(3, answers // 4):
            t = time.perf_counter()
            llm.generate([[{"role": "user", "content": "Facts: walking: 1 min 4 s in 2 episodes. Question: How long "
                                                        "was it walking? Answer in one sentence using only the facts."}]],
                         "dialog", max_new_tokens=40)
            phrase.append(time.perf_counter() - t)
        if progress:
            progress("answers", k + 1, answers)

    closed, replay_s = _episodes(llm.motion.classifier, VALIDATION_SUBJECTS[:2])
    per_device_s = len(closed) / replay_s  # closed episodes per second of one replayed device
    written = []
    stage = NarrationStage(llm_narrator(llm), written.extend, llm.version, queue_size=narration_items,
                           batch_size=batch_size)
    t = time.perf_counter()
    stage.offer_episodes(closed[:narration_items])
    stats = stage.close(timeout_s=1800)
    narration_s = time.perf_counter() - t
    lines_per_s = stats["written"] / narration_s
    keeps_up_devices = lines_per_s / per_device_s
    return {
        "llm": llm.versions, "threads": threads, "load_s": round(load_s, 1),
        "answer_p50_s": round(float(np.percentile(choose, 50)), 3), "answer_p95_s": round(float(np.percentile(choose, 95)), 3),
        "answers": len(choose),
        "phrase_p50_s": round(float(np.percentile(phrase, 50)), 3), "phrase_p95_s": round(float(np.percentile(phrase, 95)), 3),
        "phrased": len(phrase),
        "narration_lines_per_s": round(lines_per_s, 3), "narration_batch": batch_size,
        "narration_lines": stats["written"], "narration_unfaithful_replaced": stats["unfaithful_replaced"],
        "episodes_per_device_minute": round(60 * per_device_s, 2),
        "devices_kept_up_with": round(keeps_up_devices, 2),
        "kept_fraction_at_9_devices": round(min(1.0, keeps_up_devices / 9), 3),
    }
