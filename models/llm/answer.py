"""SensorLLM: the shipped adapter, its modality encoder and the LLM, answering questions about windows.

- `choose`: classification-type questions (activity, transition) pick one of the allowed answers by
  the LLM's likelihood of each answer given the sensor tokens (the sum of its tokens' log-probabilities, the
  end-of-turn token included, so "walking" does not win as a prefix of "walking upstairs").
- `is_doing`: yes/no questions about an activity, through the LLM's own activity choice.
- `events`: what happens in a window (a fall, a jump, a posture change, no event).
- `generate`: free text (captions, narration, dialog), greedy, batched, bounded length. Without sensor features
  (phrasing stored facts, narration) it runs the plain LLM: LoRA off, no prompts. The adapter was trained on
  short answers only, and with LoRA on, text-only phrasing collapsed into activity names (docs/llm.md).
Loaded once per process and per adapter directory (`SensorLLM.shared`): the backbone takes ~17-30 s to load.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from models.llm.adapter import IoTLMAdapter, load_adapter
from models.llm.data import ROOM_SYSTEM, SYSTEM, answer_ids, prompt_ids, with_reading
from models.llm.modalities import EnvModality, MotionModality

DEFAULT_ADAPTER = Path(__file__).resolve().parents[1] / "checkpoints" / "iotlm-adapter-v2"
_shared: dict[str, SensorLLM] = {}
_shared_lock = threading.Lock()


class SensorLLM:
    def __init__(self, adapter: IoTLMAdapter, motion: MotionModality, meta: dict, env: EnvModality | None = None):
        self.adapter = adapter
        self.motion = motion
        self.env = env  # None: an adapter trained without the room modality
        self.meta = meta
        self.tokenizer = adapter.backbone.tokenizer
        self.end_id = adapter.backbone.end_id
        self.version = meta.get("version", "untrained")
        self.lock = threading.Lock()  # one conditioned forward at a time: prompts live on the layers

    @classmethod
    def load(cls, directory: str | Path | None = None) -> SensorLLM:
        directory = Path(directory or DEFAULT_ADAPTER)
        if not (directory / "config.json").exists():
            raise FileNotFoundError(f"no adapter at {directory}: `iotlm train llm-adapter` makes one")
        adapter, meta = load_adapter(directory)
        pins = meta["adapter"]["modalities"]
        pin = pins["motion"]
        motion = MotionModality(pin["checkpoint"], int(pin.get("n_tokens", 4)), expect_sha256=pin["sha256"])
        env = EnvModality(pins["env"]["checkpoint"], expect_sha256=pins["env"]["sha256"]) if "env" in pins else None
        return cls(adapter, motion, meta, env)

    @classmethod
    def shared(cls, directory: str | Path | None = None) -> SensorLLM:
        key = str(directory or DEFAULT_ADAPTER)
        with _shared_lock:
            if key not in _shared:
                _shared[key] = cls.load(directory)
            return _shared[key]

    @property
    def versions(self) -> dict:
        """What an answer cites: the adapter, its LLM and its modality encoders."""
        out = {"adapter": self.version, "llm": self.adapter.config.llm, "motion_encoder": self.motion.classifier.version}
        if self.env is not None:
            out["env_encoder"] = self.env.model.version
        return out

    @property
    def activity_answers(self) -> list[str]:
        from models.datasets import HAPT_LABELS

        return list(self.meta.get("answers", {}).get("activity", HAPT_LABELS))

    def task_id(self, task: str) -> int:
        return self.adapter.config.tasks.index(task)

    def features(self, acc, gyro, rate_hz: float, placement: str = "waist") -> np.ndarray:
        return self.motion.features(acc, gyro, rate_hz, placement)

    @torch.inference_mode()
    def choose(self, features: np.ndarray, task: str, questions: list[str], choices: list[str],
               batch_size: int = 16, modality: str = "motion", histories: list | None = None) -> tuple[list[str], np.ndarray]:
        """Per window (features row of `modality`) and question: the most likely allowed answer, and (N, C)
        log-likelihoods. `histories`: per question, the conversation's earlier turns (chat messages)."""
        if modality == "env" and self.env is None:
            raise ValueError(f"adapter {self.version} was trained without the room modality")
        system = ROOM_SYSTEM if modality == "env" else SYSTEM
        answers = [answer_ids(self.tokenizer, c, self.end_id) for c in choices]
        scores = np.zeros((len(features), len(choices)), np.float32)
        with self.lock:
            for start in range(0, len(features), batch_size):
                rows = range(start, min(start + batch_size, len(features)))
                feats = {modality: torch.from_numpy(np.asarray(features[start : rows.stop], np.float32))}
                self.adapter.set_prompts(feats, torch.full((len(rows),), self.task_id(task), dtype=torch.long))
                seqs, froms = [], []
                for r in rows:
                    prompt = prompt_ids(self.tokenizer, questions[r], system, histories[r] if histories else ())
                    for a in answers:
                        seqs.append(prompt + a)
                        froms.append(len(prompt))
                logp = self.adapter.token_logprobs(seqs, froms)
                sums = torch.stack([lp.sum() for lp in logp]).view(len(rows), len(choices))
                scores[start : rows.stop] = sums.numpy()
            self.adapter.set_prompts(None, None)
        return [choices[i] for i in scores.argmax(1)], scores

    def readings(self, acc, gyro, rate_hz: float, placement: str = "waist") -> list[str]:
        """The frozen motion encoder's classifier on the same windows: the reading questions carry
        (`models.llm.data.with_reading`; in the stream it is the window's stored prediction)."""
        labels = self.activity_answers
        probs = self.motion.classifier.predict_proba(acc, gyro, rate_hz, labels, placement)
        return [labels[i] for i in probs.argmax(1)]

    def activity(self, features: np.ndarray, readings: list[str] | None = None) -> list[str]:
        """"What is the person doing?" per window, with the classifier's reading in front when given."""
        questions = [with_reading("What is the person doing?", None if readings is None else r)
                     for r in (readings or [None] * len(features))]
        return self.choose(features, "activity", questions, self.activity_answers)[0]

    def is_doing(self, features: np.ndarray, activities: list[str], readings: list[str] | None = None) -> list[bool]:
        """Yes/no questions "is the person <activity>?", one per window: answered by the LLM's own choice
        of activity (`activity`). Scoring "yes" against "no" directly was at chance in v1 on the validation
        subjects (53.7 %); through the activity choice it was 94.7 %."""
        return [p == a for p, a in zip(self.activity(features, readings), activities)]

    def events(self, features: np.ndarray) -> list[str]:
        """"What happens in this window?" per window: one of models.events.EVENTS."""
        from models.events import EVENTS

        return self.choose(features, "event", ["What happens in this window?"] * len(features), list(EVENTS))[0]

    @torch.inference_mode()
    def generate(self, messages_per_sample: list[list[dict]], task: str, features: np.ndarray | None = None,
                 max_new_tokens: int = 40, system: str = SYSTEM) -> list[str]:
        """Greedy replies, one per conversation; sensor tokens condition the top layers when `features` is given."""
        if not messages_per_sample:
            return []
        prompts = []
        for messages in messages_per_sample:
            ids = self.tokenizer.apply_chat_template([{"role": "system", "content": system}, *messages],
                                                     add_generation_prompt=True)
            prompts.append([int(i) for i in (ids["input_ids"] if hasattr(ids, "keys") else ids)])
        longest = max(len(p) for p in prompts)
        # left padding, so every reply starts right after its prompt
        input_ids = torch.tensor([[self.end_id] * (longest - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
        with self.lock:
            if features is not None:
                feats = {"motion": torch.from_numpy(np.asarray(features, np.float32))}
                self.adapter.set_prompts(feats, torch.full((len(prompts),), self.task_id(task), dtype=torch.long))
            else:
                self.adapter.use_lora(False)
            try:
                out = self.adapter.llm.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                                do_sample=False, eos_token_id=self.end_id, pad_token_id=self.end_id)
            finally:
                self.adapter.set_prompts(None, None)
                self.adapter.use_lora(True)
        return [self.tokenizer.decode(row[longest:], skip_special_tokens=True).strip() for row in out]
