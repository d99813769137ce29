"""Labeled windows from the stored stream, cut exactly as the workers cut them, and split without leaks.

Assembly: the labels (table `labels`) chosen by the job's devices, time range and label set; for each
labeled device its raw frames (`raw_frames`, the bytes the worker received) around the labeled
ranges, decoded by the ingest codec and fed in stream order to the workers' own `WindowAssembler`
built from the same settings (window, hop, gap and lateness bounds, model rate). A window is labeled
when it lies wholly inside one label range (as UCI-HAR keeps only pure windows); others are skipped.

Split (`split`): held-out windows must not share signal with training windows. Windows overlap
their neighbours (hop < window), so a split cuts between devices (`device`: whole devices go to train,
validation or test) or between time blocks of each device (`time`: blocks of `block_s`, every fifth
block validation, the next test, and a window that straddles two blocks belongs to neither).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import Connection, text

from models.datasets import WindowSet


class Refused(Exception):
    """The labels cannot support a fine-tune; the reason says why and what would."""


@dataclass
class LabeledWindows:
    acc: np.ndarray  # (N, T, 3) at the model's rate
    gyro: np.ndarray | None
    y: np.ndarray  # (N,) index into labels
    labels: list[str]
    device: np.ndarray  # (N,) device ids
    start: np.ndarray  # (N,) window start, epoch seconds
    end: np.ndarray
    label_id: np.ndarray  # (N,) the labels row each window's class comes from
    rate_hz: float
    placement: str
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def window_set(self, index: np.ndarray) -> WindowSet:
        """The rows as models.datasets.WindowSet (what models.train.finetune and evaluation take)."""
        codes = {d: i for i, d in enumerate(sorted(set(self.device.tolist())))}
        return WindowSet(self.acc[index], None if self.gyro is None else self.gyro[index], self.y[index],
                         np.array([codes[d] for d in self.device[index]], dtype=int), self.labels, self.rate_hz,
                         self.placement)


def _ts(value) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def select_labels(conn: Connection, devices: list[str] | None, start: datetime | None, end: datetime | None,
                  label_set: list[str] | None) -> list[dict]:
    """The label rows a job uses, clipped to [start, end) (datetimes or ISO 8601 strings)."""
    start, end = (datetime.fromisoformat(t) if isinstance(t, str) else t for t in (start, end))
    rows = [dict(r._mapping) for r in conn.execute(text(
        "SELECT id, device_id, starts_at, ends_at, label FROM labels "
        "WHERE (CAST(:devices AS text[]) IS NULL OR device_id = ANY(CAST(:devices AS text[]))) "
        "AND (CAST(:end AS timestamptz) IS NULL OR starts_at < :end) "
        "AND (CAST(:start AS timestamptz) IS NULL OR ends_at > :start) "
        "AND (CAST(:labels AS text[]) IS NULL OR label = ANY(CAST(:labels AS text[]))) ORDER BY device_id, starts_at"),
        {"devices": devices, "start": start, "end": end, "labels": label_set})]
    for row in rows:
        row["starts_at"] = max(row["starts_at"], start) if start else row["starts_at"]
        row["ends_at"] = min(row["ends_at"], end) if end else row["ends_at"]
    return rows


def class_order(names, known: list[str]) -> list[str]:
    """The site's known labels first, in their order, then new ones alphabetically."""
    names = set(names)
    return [n for n in known if n in names] + sorted(names - set(known))


def assemble(connect, settings, label_rows: list[dict], rate_hz: float, progress=lambda done, total: None,
             label_set: list[str] | None = None) -> LabeledWindows:
    """Decode the labeled devices' raw frames and window them as a worker does (see module docstring).
    `connect()`: a context manager giving a connection, held only while one device's frames are read
    (the runner's heartbeat and progress reports need the database meanwhile)."""
    from ingest.codec import decode
    from ingest.frame import FrameError, FrameLimits
    from stream_workers.app import segment_from_frame
    from stream_workers.windows import WindowAssembler

    if not label_rows:
        raise Refused("no labels match the job's devices, time range and label set")
    labels = label_set or class_order({r["label"] for r in label_rows}, list(settings.workers.labels))
    by_device: dict[str, list[dict]] = {}
    for row in label_rows:
        by_device.setdefault(row["device_id"], []).append(row)
    limits = FrameLimits.from_settings(settings)
    margin = settings.workers.window_s + settings.workers.lateness_s
    acc, gyro, y, devices, starts, ends, label_ids, placements = [], [], [], [], [], [], [], Counter()
    stats = Counter()
    for n_done, (device_id, rows) in enumerate(sorted(by_device.items())):
        lo, hi = min(_ts(r["starts_at"]) for r in rows), max(_ts(r["ends_at"]) for r in rows)
        with connect() as conn:
            frames = conn.execute(text(
                "SELECT seq, payload FROM raw_frames WHERE device_id = :d AND t0 >= :lo AND t0 < :hi ORDER BY t0, seq"),
                {"d": device_id, "lo": datetime.fromtimestamp(lo - margin, timezone.utc),
                 "hi": datetime.fromtimestamp(hi, timezone.utc)}).all()
        assembler = WindowAssembler.from_settings(settings.workers, rate_hz)
        windows = []
        for offset, frame_row in enumerate(frames):
            stats["frames"] += 1
            try:
                frame = decode(bytes(frame_row.payload), limits)
            except FrameError:
                stats["undecodable_frames"] += 1
                continue
            segment = segment_from_frame(frame, None, 0, offset, 0.0)
            if segment is None:
                continue
            outcome = assembler.add(segment)
            windows += outcome.windows
            stats["refused_frames"] += outcome.refused in ("duplicate", "late")
        windows += assembler.flush_device(device_id).windows
        stats["windows"] += len(windows)
        spans = sorted((_ts(r["starts_at"]), _ts(r["ends_at"]), r["label"], r["id"]) for r in rows)
        span_starts = [s[0] for s in spans]
        for w in windows:
            i = bisect.bisect_right(span_starts, w.start + 1e-6) - 1
            if i < 0 or w.end > spans[i][1] + 1e-6 or spans[i][2] not in labels:
                stats["unlabeled_windows"] += 1
                continue
            acc.append(w.acc)
            gyro.append(w.gyro)
            y.append(labels.index(spans[i][2]))
            devices.append(device_id)
            starts.append(w.start)
            ends.append(w.end)
            label_ids.append(spans[i][3])
            placements[w.placement] += 1
        progress(n_done + 1, len(by_device))
    if not y:
        raise Refused(f"no complete window lies inside a label range ({stats['frames']} raw frames of "
                      f"{len(by_device)} device(s) found); were the labeled streams stored (raw_frames retention)?")
    with_gyro = all(g is not None for g in gyro)
    placement = placements.most_common(1)[0][0] if len(placements) == 1 else "unknown"
    return LabeledWindows(np.stack(acc), np.stack(gyro) if with_gyro else None, np.array(y, dtype=np.int64), labels,
                          np.array(devices), np.array(starts), np.array(ends), np.array(label_ids), rate_hz, placement,
                          dict(stats, labeled_windows=len(y)))


def check_enough(windows: LabeledWindows, min_total: int, min_per_class: int) -> None:
    counts = Counter(windows.labels[i] for i in windows.y)
    present = [label for label in windows.labels if counts[label]]
    if len(present) < 2:
        raise Refused(f"the labels name one class only ({', '.join(present) or 'none'}): a classifier needs two or more")
    if len(windows) < min_total:
        raise Refused(f"{len(windows)} labeled windows; at least {min_total} are needed (jobs.min_windows_total)")
    few = {label: counts[label] for label in windows.labels if counts[label] < min_per_class}
    if few:
        raise Refused("too few labeled windows for " + ", ".join(f"{k!r} ({v})" for k, v in few.items())
                      + f"; each class needs at least {min_per_class} (jobs.min_windows_per_class)")


@dataclass
class Split:
    how: str
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    dropped: int  # windows straddling two time blocks
    groups: dict  # which devices or blocks went where


def split(windows: LabeledWindows, how: str = "auto", block_s: float = 60.0, seed: int = 0) -> Split:
    devices = sorted(set(windows.device.tolist()))
    if how == "auto":
        how = "device" if len(devices) >= 3 else "time"
    rng = np.random.default_rng(seed)
    if how == "device":
        if len(devices) < 3:
            raise Refused(f"a split by device needs three labeled devices or more, not {len(devices)}")
        order = list(rng.permutation(devices))
        n_test = max(1, round(0.2 * len(order)))
        n_val = max(1, round(0.15 * len(order)))
        test_d, val_d, train_d = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
        part = lambda ds: np.flatnonzero(np.isin(windows.device, ds))  # noqa: E731
        return Split("device", part(train_d), part(val_d), part(test_d), 0,
                     {"train": sorted(train_d), "validation": sorted(val_d), "test": sorted(test_d)})
    # time blocks per device, counted from its first labeled window; block b is validation when
    # b % 5 == 3 and test when b % 5 == 4 (shifted per device so every split sees every stretch)
    role = np.full(len(windows), -1)
    groups: dict[str, list] = {"train": [], "validation": [], "test": []}
    for d in devices:
        rows = np.flatnonzero(windows.device == d)
        origin = windows.start[rows].min()
        first = np.floor((windows.start[rows] - origin) / block_s).astype(int)
        last = np.floor((windows.end[rows] - origin - 1e-6) / block_s).astype(int)
        shift = int(rng.integers(5))
        inside = first == last
        kind = (first + shift) % 5
        role[rows[inside]] = np.where(kind[inside] == 3, 1, np.where(kind[inside] == 4, 2, 0))
        for b in sorted(set(first[inside].tolist())):
            k = (b + shift) % 5
            groups["validation" if k == 3 else "test" if k == 4 else "train"].append(
                [d, float(origin + b * block_s), float(origin + (b + 1) * block_s)])
    return Split("time", np.flatnonzero(role == 0), np.flatnonzero(role == 1), np.flatnonzero(role == 2),
                 int((role == -1).sum()), groups)
