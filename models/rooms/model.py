"""The environment encoder and the room-state model: occupancy (bin and count), room use, air quality.

EnvEncoder: a small 1-D CNN over a window's (level, change, presence) x minutes, pooled (mean and max)
into one vector. Heads: occupancy bins, log head count, air quality, and a projection into the
384-d all-MiniLM-L6-v2 text space (models.text) that the motion encoder also uses: room use is scored
by cosine similarity with the text vectors of words, so a use can be asked in new words ("a meeting in
progress", "the room is being cleaned"). The checkpoint stores the text vectors of its own phrases, so
the usual labels need no language model at run time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.rooms.windows import AIR_QUALITY, N_INPUT, OCCUPANCY_BINS, WINDOW_MIN
from models.text import TEXT_DIM

# Training wordings per use, and different wordings kept for the zero-shot check (never trained on).
USE_PHRASES = {
    "empty": ["an empty room", "nobody is in the room", "the room is unoccupied"],
    "office work": ["people working at their desks", "office work", "someone working in an office"],
    "meeting": ["a group meeting in the room", "people in a meeting", "a meeting"],
    "lecture": ["a lecture with students", "a class being taught", "a lecture"],
    "sleeping": ["someone sleeping in the bedroom", "people asleep", "sleeping"],
    "resting at home": ["someone relaxing in their bedroom", "resting at home", "a person reading in bed"],
    "cleaning": ["a cleaner cleaning the room", "cleaning", "the room is being vacuumed"],
    "passing through": ["people walking through a corridor", "passing through", "someone walking past"],
}
ZERO_SHOT_PHRASES = {
    "empty": "no one here",
    "office work": "employees at their computers",
    "meeting": "meeting in progress",
    "lecture": "students attending a class",
    "sleeping": "a person asleep at night",
    "resting at home": "someone resting in their room",
    "cleaning": "room being cleaned",
    "passing through": "people passing by in the hallway",
}
DEFAULT_USES = list(USE_PHRASES)
MODEL_NAME = "rooms-v1"


class EnvEncoder(nn.Module):
    def __init__(self, width: int = 64, dim: int = 128):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(N_INPUT, width, 5, padding=2), nn.GELU(),
            nn.Conv1d(width, width, 5, padding=2, stride=2), nn.GELU(),
            nn.Conv1d(width, width, 3, padding=1), nn.GELU(),
        )
        self.mlp = nn.Sequential(nn.Linear(2 * width + N_INPUT, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        last = x[:, :, -1]  # the newest minute directly: what the room is like now
        return self.mlp(torch.cat([h.mean(2), h.amax(2), last], 1))


class RoomStateNet(nn.Module):
    def __init__(self, width: int = 64, dim: int = 128):
        super().__init__()
        self.encoder = EnvEncoder(width, dim)
        self.occupancy = nn.Linear(dim, len(OCCUPANCY_BINS))
        self.count = nn.Linear(dim, 1)
        self.air = nn.Linear(dim, len(AIR_QUALITY))
        self.to_text = nn.Linear(dim, TEXT_DIM)
        self.log_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        return {"occupancy": self.occupancy(z), "log_count": self.count(z).squeeze(1), "air": self.air(z),
                "text": nn.functional.normalize(self.to_text(z), dim=-1)}

    def use_logits(self, text_unit: torch.Tensor, label_vectors: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * text_unit @ label_vectors.T


def phrase_vector(vectors: dict[str, np.ndarray], phrases: list[str]) -> np.ndarray:
    v = np.mean([vectors[p] for p in phrases], axis=0)
    return v / np.linalg.norm(v)


class RoomStateModel:
    """A loaded checkpoint. `predict(x)` -> per window: occupancy bin and probabilities, head count,
    use (over `uses`: the default labels, or any words), air quality."""

    def __init__(self, net: RoomStateNet, config: dict, text_vectors: dict[str, np.ndarray]):
        self.net = net.eval()
        self.config = config
        self.version: str = config["version"]
        self.text_vectors = dict(text_vectors)
        self._text_encoder = None

    @classmethod
    def load(cls, path_or_name: str | Path | None = None, checkpoint_dir: Path | None = None) -> RoomStateModel:
        from safetensors.torch import load_file

        directory = resolve_room_checkpoint(path_or_name, checkpoint_dir)
        config = json.loads((directory / "config.json").read_text())
        tensors = load_file(str(directory / "model.safetensors"))
        phrases = config["text_phrases"]
        text = tensors.pop("text_vectors").numpy()
        net = RoomStateNet(**config["architecture"])
        net.load_state_dict(tensors)
        return cls(net, config, dict(zip(phrases, text)))

    def save(self, directory: Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        phrases = sorted(self.text_vectors)
        tensors["text_vectors"] = torch.from_numpy(np.stack([self.text_vectors[p] for p in phrases]).astype(np.float32))
        save_file(tensors, str(directory / "model.safetensors"))
        config = {**self.config, "text_phrases": phrases,
                  "n_parameters": sum(p.numel() for p in self.net.parameters())}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return directory

    def label_vectors(self, uses: list[str] | None) -> np.ndarray:
        """One text vector per use: the checkpoint's own phrases for its default uses, else the words embedded."""
        uses = uses or DEFAULT_USES
        missing = [u for u in uses if u not in USE_PHRASES and u not in self.text_vectors]
        if missing:
            if self._text_encoder is None:
                from models.text import TextEncoder

                self._text_encoder = TextEncoder()
            for phrase, vector in zip(missing, self._text_encoder.embed(missing)):
                self.text_vectors[phrase] = vector
        return np.stack([phrase_vector(self.text_vectors, USE_PHRASES[u]) if u in USE_PHRASES
                         else self.text_vectors[u] for u in uses])

    @torch.inference_mode()
    def predict(self, x: np.ndarray, uses: list[str] | None = None) -> dict[str, np.ndarray]:
        if x.ndim != 3 or x.shape[1:] != (N_INPUT, WINDOW_MIN):
            raise ValueError(f"room windows must be (n, {N_INPUT}, {WINDOW_MIN}), got {x.shape}")
        out = self.net(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        vectors = torch.from_numpy(self.label_vectors(uses).astype(np.float32))
        occupancy = out["occupancy"].softmax(1).numpy()
        use = self.net.use_logits(out["text"], vectors).softmax(1).numpy()
        count = np.expm1(out["log_count"].clamp(min=0).numpy())
        return {"occupancy": occupancy, "occupancy_bin": occupancy.argmax(1),
                "count": np.where(occupancy.argmax(1) == 0, 0.0, np.maximum(count, 1.0)),
                "use": use, "use_index": use.argmax(1), "air": out["air"].softmax(1).numpy()}


def resolve_room_checkpoint(path_or_name: str | Path | None, checkpoint_dir: Path | None = None) -> Path:
    path = Path(path_or_name or MODEL_NAME)
    if (path / "config.json").exists():
        return path
    base = Path(checkpoint_dir) if checkpoint_dir else Path(__file__).resolve().parent.parent / "checkpoints"
    named = base / str(path_or_name or MODEL_NAME)
    if (named / "config.json").exists():
        return named
    raise FileNotFoundError(f"no room checkpoint at {path} or {named} (`iotlm train rooms` makes one)")
