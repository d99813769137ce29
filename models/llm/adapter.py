"""The multisensory multitask adapter (IoT-LM, arXiv 2407.09801), written here on top of a small causal LLM.

    window ──frozen modality encoder──► features (n, F) ──projection──► sensor tokens (n, 576)
                                                                         + task token (one per task)
    top `adapter_layers` decoder layers: attention also reads [adapter prompts ; sensor tokens] through
    the layer's own k/v projections, softmaxed apart from the text and scaled by a zero-initialised gate per
    head (the LLaMA-Adapter mechanism); LoRA (peft) on q/v of the same layers.

A modality is one frozen encoder (pinned by checkpoint name and file hash in the adapter's config) plus one
projection; `motion` is the motion encoder (`models/checkpoints/motion-v1-hapt` by default): its per-segment
tokens and its pooled embedding, all in the 384-d text space; `env` is the room model's encoder (`rooms-v1`).
A sample carries the modalities it has (a room window has no motion tokens). With every gate at zero and LoRA's B at zero
the adapter's logits equal the base LLM's exactly (tests/models/test_llm_adapter.py).

The lower layers see only text (the sensor enters in the top layers), so their hidden states depend on the
token ids alone: `lower()` caches them per sequence, and training and scoring run only the top layers.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from models.llm.backbone import Backbone

TASKS = ("activity", "yes_no", "transition", "caption", "dialog", "narration", "room", "event")


@dataclass
class AdapterConfig:
    llm: str = "smollm2-135m-instruct"
    adapter_layers: int = 3  # top layers with adapter prompts and LoRA; the ones below stay frozen and cached
    prompt_tokens: int = 4  # learned adapter prompts per layer
    sensor_tokens: int = 4  # per modality, pooled from the encoder's segment tokens (+1: its pooled embedding)
    lora_rank: int = 4
    lora_alpha: float = 8.0
    tasks: tuple[str, ...] = TASKS
    # name -> {"checkpoint": ..., "sha256": ..., "version": ..., "feature_dim": ...}
    modalities: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["tasks"] = tuple(known.get("tasks", TASKS))
        return cls(**known)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class GatedAdapterAttention(nn.Module):
    """One decoder layer's attention plus zero-gated attention over that layer's adapter prompt."""

    def __init__(self, base: nn.Module, n_heads: int, n_kv_heads: int):
        super().__init__()
        self.base = base
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = base.head_dim
        self.gate = nn.Parameter(torch.zeros(n_heads))
        self.prompt: torch.Tensor | None = None  # (B, P, width), set per call by IoTLMAdapter.conditioned

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None, **kwargs):
        out, weights = self.base(hidden_states, position_embeddings=position_embeddings,
                                 attention_mask=attention_mask, past_key_values=past_key_values, **kwargs)
        if self.prompt is None:
            return out, weights
        b, t, _ = hidden_states.shape
        prompt = self.prompt
        if prompt.shape[0] != b:  # one prompt per sample, each sample scored with several answers
            prompt = prompt.repeat_interleave(b // prompt.shape[0], dim=0)
        q = self.base.q_proj(hidden_states).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        q = q * cos.unsqueeze(1) + _rotate_half(q) * sin.unsqueeze(1)
        p = prompt.shape[1]
        k = self.base.k_proj(prompt).view(b, p, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.base.v_proj(prompt).view(b, p, self.n_kv_heads, self.head_dim).transpose(1, 2)
        groups = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        # softmax over the prompt alone, so a zero gate leaves the text's own attention untouched
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.head_dim ** -0.5, dim=-1) @ v  # (b, h, t, hd)
        attn = attn * torch.tanh(self.gate).view(1, -1, 1, 1)
        return out + self.base.o_proj(attn.transpose(1, 2).reshape(b, t, -1)), weights


class Projection(nn.Module):
    """A modality's features (B, n, F) -> sensor tokens (B, n, width)."""

    def __init__(self, feature_dim: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, width), nn.GELU(), nn.Linear(width, width))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.net(x))


class IoTLMAdapter(nn.Module):
    def __init__(self, config: AdapterConfig, backbone: Backbone):
        super().__init__()
        from peft import LoraConfig, inject_adapter_in_model

        self.config = config
        self.backbone = backbone
        # The adapter owns a copy of the LLM, so the shared, cached base model stays the plain LLM.
        self.llm = copy.deepcopy(backbone.model)
        for p in self.llm.parameters():
            p.requires_grad_(False)
        cfg = self.llm.config
        width, n_layers = cfg.hidden_size, cfg.num_hidden_layers
        self.split = n_layers - config.adapter_layers
        top = list(range(self.split, n_layers))
        if config.lora_rank > 0:
            inject_adapter_in_model(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                                               target_modules=["q_proj", "v_proj"], layers_to_transform=top),
                                    self.llm)
        self.attentions = nn.ModuleList()
        for i in top:
            layer = self.llm.model.layers[i]
            layer.self_attn = GatedAdapterAttention(layer.self_attn, cfg.num_attention_heads, cfg.num_key_value_heads)
            self.attentions.append(layer.self_attn)
        self.prompts = nn.Parameter(torch.randn(config.adapter_layers, config.prompt_tokens, width) * 0.02)
        self.task_tokens = nn.Embedding(len(config.tasks), width)
        nn.init.normal_(self.task_tokens.weight, std=0.02)
        self.projections = nn.ModuleDict({
            name: Projection(int(m["feature_dim"]), width) for name, m in config.modalities.items()})
        for name, p in self.named_parameters():
            p.requires_grad_(not name.startswith("llm.") or "lora_" in name or name.endswith(".gate"))
        self._lower_cache: dict[tuple[int, ...], torch.Tensor] = {}

    # -- parameters and files ------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def save(self, directory: Path, meta: dict) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_state(), str(directory / "adapter.safetensors"))
        body = {**meta, "adapter": self.config.to_dict(), "n_trainable_parameters": self.n_trainable()}
        (directory / "config.json").write_text(json.dumps(body, indent=2) + "\n")
        return directory

    def load_weights(self, path: Path) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        own = dict(self.named_parameters())
        missing = [n for n, p in own.items() if p.requires_grad and n not in tensors]
        if missing:
            raise ValueError(f"{path}: missing adapter weights {missing[:3]}...")
        with torch.no_grad():
            for name, value in tensors.items():
                own[name].copy_(value)

    def use_lora(self, enabled: bool) -> None:
        """LoRA on or off (off: with no prompts set, the model is the plain LLM again, e.g. for text-only phrasing)."""
        for module in self.llm.modules():
            if hasattr(module, "lora_A") and hasattr(module, "enable_adapters"):
                module.enable_adapters(enabled)

    # -- forward pieces ------------------------------------------------------------------------------------
    def sensor_tokens(self, features: dict[str, torch.Tensor], task_ids: torch.Tensor) -> torch.Tensor:
        """(B, n_all, width): every modality's projected tokens, in config order, plus the task token."""
        parts = [self.projections[name](features[name]) for name in self.config.modalities if name in features]
        task = self.task_tokens(task_ids).unsqueeze(1)
        return torch.cat(parts, dim=1) + task if parts else task

    def set_prompts(self, features: dict[str, torch.Tensor] | None, task_ids: torch.Tensor | None) -> None:
        """Condition the top layers on these samples (None: the plain LLM again, gates unused)."""
        if features is None:
            for attention in self.attentions:
                attention.prompt = None
            return
        sensor = self.sensor_tokens(features, task_ids)
        task = self.task_tokens(task_ids).unsqueeze(1)
        for i, attention in enumerate(self.attentions):
            attention.prompt = torch.cat([self.prompts[i].unsqueeze(0) + task, sensor], dim=1)

    @torch.no_grad()
    def lower(self, ids: list[int]) -> torch.Tensor:
        """Hidden states (len, width) entering the first adapted layer; text only, so cached per sequence."""
        key = tuple(ids)
        hit = self._lower_cache.get(key)
        if hit is not None:
            return hit
        x = torch.tensor([ids])
        model = self.llm.model
        hidden = model.embed_tokens(x)
        position_ids = torch.arange(len(ids)).unsqueeze(0)
        pe = model.rotary_emb(hidden, position_ids)
        for layer in model.layers[: self.split]:
            hidden = layer(hidden, attention_mask=None, position_ids=position_ids, position_embeddings=pe)
        if len(self._lower_cache) > 50_000:
            self._lower_cache.clear()
        self._lower_cache[key] = hidden[0]
        return hidden[0]

    def upper(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, width) right-padded lower states -> final-normed states. Causal attention, so padding
        at the end never reaches the positions before it."""
        model = self.llm.model
        position_ids = torch.arange(hidden.shape[1]).unsqueeze(0)
        pe = model.rotary_emb(hidden, position_ids)
        for layer in model.layers[self.split:]:
            hidden = layer(hidden, attention_mask=None, position_ids=position_ids, position_embeddings=pe)
        return model.norm(hidden)

    def token_logprobs(self, sequences: list[list[int]], targets_from: list[int]) -> list[torch.Tensor]:
        """Per sequence, log p(token_i | tokens before i) for i >= targets_from (prompts already set)."""
        longest = max(len(s) for s in sequences)
        width = self.llm.config.hidden_size
        batch = torch.zeros(len(sequences), longest, width)
        for row, ids in enumerate(sequences):
            batch[row, : len(ids)] = self.lower(ids)
        hidden = self.upper(batch)
        head = self.llm.lm_head.weight
        out = []
        for row, (ids, start) in enumerate(zip(sequences, targets_from)):
            logits = hidden[row, start - 1 : len(ids) - 1] @ head.T  # only the answer positions
            out.append(torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[start:]).unsqueeze(1))[:, 0])
        return out


def load_adapter(directory: Path, backbone: Backbone | None = None) -> tuple[IoTLMAdapter, dict]:
    """The adapter in `directory` (config.json + adapter.safetensors) on its backbone (loaded when not given)."""
    from models.llm.backbone import load_backbone

    meta = json.loads((Path(directory) / "config.json").read_text())
    config = AdapterConfig.from_dict(meta["adapter"])
    adapter = IoTLMAdapter(config, backbone or load_backbone(None if config.llm == "smollm2-135m-instruct" else config.llm))
    adapter.load_weights(Path(directory) / "adapter.safetensors")
    return adapter.eval(), meta
