"""The generalization table behind `iotlm eval --dataset all`: every offline dataset, scored under the
conditions a new user meets (issue 12), one row per (dataset, condition), as JSON and markdown.

Conditions (each on the dataset's held-out test windows; HAPT: test subjects 2,4,9,10,12,13,18,20,24):
- `told`: placement told, the dataset's own class names (what `iotlm eval --setting zero-shot` does);
- `unknown`: placement `unknown`;
- `mount_subject`: every subject's device turned by one uniformly random rotation, placement unknown
  (BasicMotions has no subject ids: one rotation per window);
- `mount_subject_adaptive`: the same windows with each subject's gravity reference (models/gravity.py,
  label-free, from that subject's own windows in time order) -- the per-device-adaptive setting,
  reported separately from the single-window one above;
- `rot90_window`: one random 90-degree turn about a device axis per window, placement unknown;
- `wording_<set>`: class names in `UNSEEN_WORDINGS` (no content word shared with any training
  caption, prompt template or default label; `unseen_wording_overlap` checks it), placement told;
- `hint_<placement>`: every placement the encoder has a row for given as the hint (on HAPT's waist data
  a wrong hint: does the hint break the model?), placements the checkpoint refuses show the reason;
- `rate_<hz>`: windows decimated to a lower rate with an anti-alias filter (scipy's resample_poly), and
  `rate_<hz>_unfiltered`: every k-th sample (a device without an anti-alias filter);
- `finetuned`, `finetuned_no_gyro`: the fine-tuned checkpoint (HAPT only) with and without its gyroscope,
  and `finetuned_adaptive`, `finetuned_no_gyro_adaptive` with each subject's gravity reference.

Every choice here (wordings, rotation seeds, rates) was fixed before measuring and none was tuned on
test subjects; wordings were written against the training captions' vocabulary only.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

SEED = 0
RATES_HZ = (10.0, 20.0)
# Paraphrases that share no content word with the training text (checked by unseen_wording_overlap).
UNSEEN_WORDINGS: dict[str, dict[str, dict[str, str]]] = {
    "hapt": {
        "a": {"walking": "ambling", "walking upstairs": "heading to the storey above",
              "walking downstairs": "heading to the storey below", "sitting": "settled in an armchair",
              "standing": "erect and motionless", "lying down": "dozing on a mattress"},
        "b": {"walking": "trudging", "walking upstairs": "clambering toward the attic",
              "walking downstairs": "treading toward the cellar", "sitting": "perched on a stool",
              "standing": "loitering, immobile", "lying down": "sprawled supine"},
    },
    "basicmotions": {
        "a": {"standing": "erect and motionless", "walking": "ambling", "running": "dashing",
              "playing badminton": "smashing birdies over a net"},
        "b": {"standing": "loitering, immobile", "walking": "trudging", "running": "hurrying at full tilt",
              "playing badminton": "volleying with a feathered projectile"},
    },
}
# Validation wordings: written after the test wordings, also sharing no content word with the training text (nor
# with the test wordings); scored on HAPT validation subjects only, to choose how unseen wordings are grounded
# (`wording_validation`; the test wordings above are not read there).
VALIDATION_WORDINGS: dict[str, dict[str, str]] = {
    "v1": {"walking": "pacing about", "walking upstairs": "mounting to the loft",
           "walking downstairs": "trooping into the basement", "sitting": "on a couch", "standing": "poised, unmoving",
           "lying down": "napping"},
    "v2": {"walking": "roaming the hallway", "walking upstairs": "scaling toward the penthouse",
           "walking downstairs": "returning to the lobby", "sitting": "lounging on a settee",
           "standing": "posted like a sentry", "lying down": "snoozing"},
}
GROUNDING_GRID = tuple((t, w) for t in (0.02, 0.05, 0.1) for w in (0.0, 0.25, 0.5, 0.75, 1.0))
STOPWORDS = frozenset(
    "a an the of to in on at by with for from and or is are its it their his her then while into onto over "
    "toward towards via as".split())


def _content_words(text: str) -> set[str]:
    words = {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOPWORDS}
    # crude stems, so "walks" / "walked" / "walking" count as one word
    return words | {re.sub(r"(ing|ed|es|s)$", "", w) for w in words if len(w) > 4}


def training_vocabulary() -> set[str]:
    """Content words of every text the encoder was aligned with (motion-v1's sentences, motion-v2's
    compositional captions) or that ships as a default label."""
    from models.captions import caption_words
    from models.simulator import ACTIVITIES
    from models.text import PROMPT_TEMPLATES
    from models.train import DEFAULT_LABELS

    texts = [d for spec in ACTIVITIES.values() for d in spec.descriptions] + list(ACTIVITIES) + caption_words()
    texts += [t.format("") for t in PROMPT_TEMPLATES] + list(DEFAULT_LABELS)
    return set().union(*map(_content_words, texts))


def unseen_wording_overlap() -> dict[str, set[str]]:
    """wording -> the training content words it shares (all empty when the wordings are unseen); validation
    wordings also against the test wordings."""
    vocabulary = training_vocabulary()
    test_words = set().union(*(_content_words(w) for sets in UNSEEN_WORDINGS.values() for s in sets.values()
                               for w in s.values()))
    out = {w: _content_words(w) & vocabulary for sets in UNSEEN_WORDINGS.values() for s in sets.values()
           for w in s.values()}
    out |= {w: _content_words(w) & (vocabulary | test_words) for s in VALIDATION_WORDINGS.values() for w in s.values()}
    return out


def wording_validation(model: str | None = None, grid=GROUNDING_GRID, limit: int | None = None) -> dict:
    """Validation wordings on the HAPT validation subjects, per (temperature, weight) of the grounding of unseen
    wordings (models.text.ground_in_concepts), placement told; `chosen`: the best mean macro-F1 over the sets
    (ties: the smaller weight). Test subjects and test wordings are not read."""
    import torch

    from models.evaluate import splits
    from models.inference import MotionClassifier
    from models.metrics import classification_metrics

    classifier = MotionClassifier.load(model or "motion-v1", device="cpu")
    w = splits("hapt", limit, SEED)[1]
    with torch.inference_mode():
        motion = torch.from_numpy(classifier.embed(w.acc, w.gyro, w.rate_hz, w.placement))
        rows = []
        for grounding in grid:
            classifier.grounding = grounding
            row = {"temperature": grounding[0], "weight": grounding[1]}
            for name, wording in VALIDATION_WORDINGS.items():
                vectors = classifier.label_vectors([wording[label] for label in w.labels])
                m = classification_metrics(w.y, classifier.model.logits(motion, vectors).argmax(1).numpy(), w.labels)
                row[name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
            row["mean_macro_f1"] = float(np.mean([row[n]["macro_f1"] for n in VALIDATION_WORDINGS]))
            rows.append(row)
    best = max(rows, key=lambda r: (round(r["mean_macro_f1"], 4), -r["weight"]))
    return {"model": classifier.version, "validation_subjects": sorted({int(x) for x in np.unique(w.subjects)}),
            "n_windows": len(w), "rows": rows, "chosen": [best["temperature"], best["weight"]]}


def reference_validation(model: str | None = None, thresholds=(3, 10, 25, 50, 100), first_s: float | None = None,
                         subjects: tuple[int, ...] | None = None) -> dict:
    """The workers' online gravity reference (models.gravity.GravityReference, updated window by window as a worker
    does) on the HAPT TRAIN subjects' recordings from their start, as worn and under one random mounting per
    subject: accuracy (placement waist) per minimum number of gait windows before the reference is used, and
    without one. `first_s`: only each recording's first seconds (the start of a stream). Test subjects are not read.
    `chosen`: the threshold with the best mean of the two conditions (fixed 2026-12-07 before the first run)."""
    from ingest.hapt import load_hapt
    from models.datasets import HAPT_LABELS, HAPT_TRAIN_SUBJECTS
    from models.gravity import GravityReference
    from models.inference import MotionClassifier

    subjects = tuple(subjects or HAPT_TRAIN_SUBJECTS)
    assert set(subjects) <= set(HAPT_TRAIN_SUBJECTS), "train subjects only"
    classifier = MotionClassifier.load(model or "motion-v1", device="cpu")
    recordings = load_hapt(subjects)
    mountings = random_rotations(len(recordings), np.random.default_rng(SEED + 7))
    size, hop, never = 128, 64, float("inf")
    rows = {}
    for condition in ("as_worn", "mounted"):
        correct, judged = dict.fromkeys((*thresholds, never), 0), 0
        for recording, mounting in zip(recordings, mountings):
            end = len(recording.acc) if first_s is None else int(first_s * recording.rate_hz)
            acc, gyro = recording.acc[:end], recording.gyro[:end]
            if condition == "mounted":
                acc, gyro = acc @ mounting.T, gyro @ mounting.T
            labels = np.clip(recording.labels[:end].astype(int), 0, None)
            starts = range(0, len(acc) - size + 1, hop)
            acc_w = np.stack([acc[i:i + size] for i in starts])
            gyro_w = np.stack([gyro[i:i + size] for i in starts])
            reference, ups, counts = GravityReference(), [], []
            for window in acc_w:  # in time order, as the stream sends them
                reference.update(window)
                total = np.asarray(reference.gait_sum)
                ups.append(total / max(np.linalg.norm(total), 1e-9))
                counts.append(reference.gait_count)
            keep = np.array([np.isin(labels[i:i + size], range(1, 7)).all() for i in starts])
            truth = np.array([np.bincount(labels[i:i + size], minlength=7)[1:7].argmax() for i in starts])[keep]
            for k in correct:
                up = np.where((np.array(counts) >= k)[:, None], np.array(ups), 0.0)[keep]  # zeros: no reference yet
                p = classifier.predict_proba(acc_w[keep], gyro_w[keep], recording.rate_hz, list(HAPT_LABELS), "waist",
                                             up=up)
                correct[k] += int((p.argmax(1) == truth).sum())
            judged += int(keep.sum())
        rows[condition] = {("never" if k == never else str(k)): correct[k] / judged for k in correct}
    mean = {k: (rows["as_worn"][k] + rows["mounted"][k]) / 2 for k in rows["as_worn"]}
    return {"model": classifier.version, "subjects": list(subjects), "first_s": first_s,
            "accuracy_by_min_gait_windows": rows, "mean": mean,
            "chosen": max((k for k in mean if k != "never"), key=lambda k: (round(mean[k], 4), -int(k)))}


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) uniformly random rotations (QR of Gaussian matrices, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def quarter_turns(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3): a 90-degree turn, either way, about a random device axis."""
    out = np.zeros((n, 3, 3))
    for i, (axis, sign) in enumerate(zip(rng.integers(0, 3, n), rng.choice([-1, 1], n))):
        a, b = [k for k in range(3) if k != axis]
        out[i, axis, axis] = 1
        out[i, a, b], out[i, b, a] = -sign, sign
    return out


def _turn(x: np.ndarray | None, rotations: np.ndarray) -> np.ndarray | None:
    return None if x is None else np.einsum("btj,bij->bti", x, rotations).astype(np.float32)


def decimate(x: np.ndarray | None, rate_hz: float, target_hz: float) -> np.ndarray | None:
    """(N, T, 3) -> the same windows at target_hz, polyphase FIR anti-alias filter first."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    if x is None:
        return None
    f = Fraction(target_hz / rate_hz).limit_denominator(100)
    return resample_poly(x, f.numerator, f.denominator, axis=1, padtype="line").astype(np.float32)


def _score(classifier, windows, labels: list[str], acc=None, gyro="same", rate_hz=None, placement=None, up=None):
    from models.metrics import classification_metrics

    acc = windows.acc if acc is None else acc
    gyro = windows.gyro if isinstance(gyro, str) else gyro
    probabilities = classifier.predict_proba(acc, gyro, rate_hz or windows.rate_hz, labels,
                                             placement or windows.placement, up=up)
    m = classification_metrics(windows.y, probabilities.argmax(1), windows.labels)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "per_class_f1": m["per_class_f1"]}


def _test_windows(dataset: str, limit: int | None):
    from models.evaluate import splits

    return splits(dataset, limit, SEED)[2]


def dataset_rows(dataset: str, zero_shot, finetuned=None, only: set[str] | None = None, limit: int | None = None):
    """The rows of one dataset (dicts: dataset, condition, what, model, accuracy, macro_f1 or refused)."""
    from models.encoder import PLACEMENTS
    from models.gravity import device_references
    from models.inference import UnservedPlacement

    w = _test_windows(dataset, limit)
    rng = np.random.default_rng(SEED)
    rows: list[dict] = []

    def row(condition: str, what: str, classifier, **kw) -> None:
        if only and condition not in only:
            return
        entry = {"dataset": dataset, "condition": condition, "what": what, "model": classifier.version,
                 "n_windows": len(w)}
        try:
            entry.update(_score(classifier, w, kw.pop("labels", w.labels), **kw))
        except UnservedPlacement as exc:
            entry["refused"] = str(exc)
        rows.append(entry)

    row("told", f"placement told ({w.placement}), the dataset's class names", zero_shot)
    row("unknown", "placement unknown", zero_shot, placement="unknown")
    if dataset == "hapt":  # the reference must not hurt a device worn the usual way
        row("told_adaptive", "placement told, per-device gravity reference (label-free)", zero_shot,
            up=device_references(w.acc, w.subjects))
    # one rotation per subject (a device worn its own way); BasicMotions has no subject ids
    groups = w.subjects if dataset == "hapt" else np.arange(len(w))
    subject_ids = np.unique(groups)
    per_subject = random_rotations(len(subject_ids), rng)[np.searchsorted(subject_ids, groups)]
    acc_m, gyro_m = _turn(w.acc, per_subject), _turn(w.gyro, per_subject)
    row("mount_subject", "one random rotation per subject, placement unknown, single window", zero_shot,
        acc=acc_m, gyro=gyro_m, placement="unknown")
    if dataset == "hapt":  # a per-device reference needs a device's stream; BasicMotions has none
        up = device_references(acc_m, w.subjects)
        row("mount_subject_adaptive", "same rotations, per-device gravity reference (label-free), placement unknown",
            zero_shot, acc=acc_m, gyro=gyro_m, placement="unknown", up=up)
        row("mount_subject_adaptive_told", "same, placement told", zero_shot, acc=acc_m, gyro=gyro_m, up=up)
    quarter = quarter_turns(len(w), rng)
    row("rot90_window", "one random 90-degree turn per window, placement unknown", zero_shot,
        acc=_turn(w.acc, quarter), gyro=_turn(w.gyro, quarter), placement="unknown")
    for name, wording in UNSEEN_WORDINGS.get(dataset, {}).items():
        labels = [wording[label] for label in w.labels]
        row(f"wording_{name}", "unseen wording: " + " / ".join(labels), zero_shot, labels=labels)
    for placement in PLACEMENTS:
        if placement not in ("unknown", w.placement):
            row(f"hint_{placement}", f"placement hint {placement!r} (the data is {w.placement})", zero_shot,
                placement=placement)
    for rate in RATES_HZ:
        if rate < w.rate_hz:
            row(f"rate_{rate:g}hz", f"{rate:g} Hz input (anti-aliased)", zero_shot,
                acc=decimate(w.acc, w.rate_hz, rate), gyro=decimate(w.gyro, w.rate_hz, rate), rate_hz=rate)
            if w.rate_hz % rate == 0:  # a device without an anti-alias filter: every k-th sample
                k = int(w.rate_hz // rate)
                row(f"rate_{rate:g}hz_unfiltered", f"{rate:g} Hz input, every {k}th sample (no anti-alias filter)",
                    zero_shot, acc=w.acc[:, ::k], gyro=None if w.gyro is None else w.gyro[:, ::k], rate_hz=rate)
    if finetuned is not None and dataset == "hapt":
        row("finetuned", "fine-tuned checkpoint, placement told", finetuned)
        row("finetuned_no_gyro", "fine-tuned checkpoint without its gyroscope", finetuned, gyro=None)
        up = device_references(w.acc, w.subjects)
        row("finetuned_adaptive", "fine-tuned checkpoint, per-device gravity reference", finetuned, up=up)
        row("finetuned_no_gyro_adaptive", "fine-tuned, per-device gravity reference, without gyroscope", finetuned,
            gyro=None, up=up)
    return rows


def finetuned_name(zero_shot_name: str | None, checkpoint_dir) -> str | None:
    """`<name>-hapt` beside the zero-shot checkpoint (or in the checkpoint dir), if it exists."""
    from models.inference import resolve_checkpoint

    base = Path(resolve_checkpoint(zero_shot_name, checkpoint_dir))
    sibling = base.parent / f"{base.name}-hapt"
    if (sibling / "config.json").exists():
        return str(sibling)
    try:
        return str(resolve_checkpoint(f"{base.name}-hapt", checkpoint_dir))
    except FileNotFoundError:
        return None


def run_conditions(model: str | None = None, datasets=("hapt", "basicmotions"), only: set[str] | None = None,
                   limit: int | None = None, checkpoint_dir=None, out_dir: Path | None = None,
                   grounding: tuple[float, float] | None = None) -> dict:
    """All rows for all datasets; with out_dir also writes conditions-<version>.json and .md there (with
    `grounding` (temperature, weight) for unseen wordings: conditions-<version>-grounded.json / .md)."""
    import json

    from models.inference import MotionClassifier

    start = time.time()
    zero_shot = MotionClassifier.load(model, device="cpu", checkpoint_dir=checkpoint_dir)
    tuned = finetuned_name(model, checkpoint_dir)
    finetuned = MotionClassifier.load(tuned, device="cpu", checkpoint_dir=checkpoint_dir) if tuned else None
    if grounding is not None:
        for classifier in (zero_shot, finetuned):
            if classifier is not None:
                classifier.grounding = tuple(grounding)
    rows = [r for d in datasets for r in dataset_rows(d, zero_shot, finetuned, only, limit)]
    report = {"setting": "conditions", "model_version": zero_shot.version,
              "finetuned_version": finetuned.version if finetuned else None, "seed": SEED, "limit": limit,
              "command": f"iotlm eval --dataset all --setting zero-shot{f' --model {model}' if model else ''}"
                         f"{' --ground {},{}'.format(*grounding) if grounding else ''} --json",
              "grounding": list(zero_shot.grounding), "rows": rows, "seconds": round(time.time() - start, 1)}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = f"conditions-{zero_shot.version}{'-grounded' if grounding else ''}"
        (out_dir / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
        (out_dir / f"{name}.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"Conditions table, `{report['command']}` (zero-shot model {report['model_version']}, "
             f"fine-tuned {report['finetuned_version']}, seed {report['seed']})", "",
             "| dataset | condition | what | model | accuracy | macro-F1 |", "|---|---|---|---|---:|---:|"]
    for r in report["rows"]:
        if "refused" in r:
            score = f"refused: {r['refused']} | -"
        else:
            score = f"{100 * r['accuracy']:.1f} | {100 * r['macro_f1']:.1f}"
        lines.append(f"| {r['dataset']} | `{r['condition']}` | {r['what']} | {r['model']} | {score} |")
    return "\n".join(lines) + "\n"
