"""WindowAssembler: aligned keys, resampling, gaps, duplicates, out-of-order frames, lateness, restarts."""

from __future__ import annotations

import numpy as np
import pytest

from stream_workers.windows import ImuSegment, WindowAssembler

LABELS = ["walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying"]
T0 = 1_700_000_000.37  # deliberately not on the hop grid


def make_assembler(rate_hz: float = 50.0, lateness_s: float = 5.0) -> WindowAssembler:
    return WindowAssembler(
        window_s=2.56, hop_s=1.28, rate_hz=rate_hz, max_gap_s=0.1, lateness_s=lateness_s, labels=LABELS
    )


def frames(count: int, rate_hz: float = 50.0, frame_s: float = 1.0, t0: float = T0, label: int = 1, device="dev-a"):
    """`count` consecutive frames of a ramp signal (acc x = sample time - t0), offsets = seq."""
    n = round(frame_s * rate_hz)
    out = []
    for seq in range(count):
        start = t0 + seq * frame_s
        t = start + np.arange(n) / rate_hz
        acc = np.stack([t - t0, np.zeros(n), np.full(n, 9.81)], 1).astype(np.float32)
        out.append(
            ImuSegment(
                device_id=device, seq=seq, t0=start, rate_hz=rate_hz, acc=acc, gyro=np.zeros((n, 3), np.float32),
                labels=np.full(n, label, np.int16), offset=seq, produced_at=float(seq),
            )
        )
    return out


def feed(assembler: WindowAssembler, segments) -> list:
    windows = []
    for seg in segments:
        windows.extend(assembler.add(seg).windows)
    return windows


class TestAlignedKeys:
    def test_windows_start_on_the_hop_grid_and_slide_by_one_hop(self):
        windows = feed(make_assembler(), frames(20))
        starts = [w.start for w in windows]
        assert len(windows) >= 12
        assert all(abs(s / 1.28 - round(s / 1.28)) < 1e-6 for s in starts)
        assert np.allclose(np.diff(starts), 1.28)
        assert all(w.acc.shape == (128, 3) and w.gyro.shape == (128, 3) for w in windows)
        assert starts[0] >= T0

    def test_a_worker_starting_mid_stream_produces_the_same_keys_and_samples(self):
        full = {w.start: w for w in feed(make_assembler(), frames(20))}
        late_start = feed(make_assembler(), frames(20)[7:])
        assert late_start and all(w.start in full for w in late_start)
        for w in late_start:
            assert np.allclose(w.acc, full[w.start].acc, atol=1e-4)

    def test_resampling_to_the_model_rate_interpolates_the_signal(self):
        windows = feed(make_assembler(rate_hz=50.0), frames(6, rate_hz=100.0))
        w = windows[0]
        assert w.acc.shape == (128, 3)
        # sample j summarises the 100 Hz samples around start + j/50 + 1/100, as models.encoder.resample does
        expected = w.start + np.arange(128) / 50.0 + 0.01 - T0
        assert np.allclose(w.acc[:, 0], expected, atol=1e-4)

    def test_decimating_removes_frequencies_above_the_model_nyquist(self):
        segs = frames(6, rate_hz=50.0)
        for seg in segs:
            seg.acc[:, 1] = np.where(np.arange(seg.n) % 2 == 0, 1.0, -1.0)  # 25 Hz: aliases to DC at 25 Hz
        w = feed(make_assembler(rate_hz=25.0), segs)[0]
        assert w.acc.shape == (64, 3)
        assert np.abs(w.acc[:, 1]).max() < 1e-6


class TestGroundTruth:
    def test_majority_label_of_basic_activities(self):
        windows = feed(make_assembler(), frames(6, label=4))
        assert {w.truth for w in windows} == {"sitting"}

    def test_transition_or_unlabelled_samples_give_no_truth(self):
        segs = frames(10, label=5)
        segs[2].labels[10] = 7  # a postural transition sample
        windows = feed(make_assembler(), segs)
        spoiled = [w for w in windows if w.start <= segs[2].t0 + 0.2 < w.end]
        assert spoiled and all(w.truth is None for w in spoiled)
        assert any(w.truth == "standing" for w in windows)


class TestDuplicates:
    def test_same_seq_twice_is_dropped_and_counted(self):
        a = make_assembler()
        segs = frames(8)
        feed(a, segs[:5])
        outcome = a.add(segs[3])
        assert outcome.refused == "duplicate" and "seq 3" in outcome.reason
        assert not outcome.windows
        assert a.stats.duplicate_frames == 1

    def test_overlapping_samples_under_a_new_seq_are_dropped(self):
        a = make_assembler()
        segs = frames(8)
        windows = feed(a, segs[:6])
        overlapping = frames(1, t0=segs[5].t0 - 0.5)[0]
        overlapping.seq = 99
        outcome = a.add(overlapping)
        assert outcome.refused == "duplicate" and "overlapping" in outcome.reason
        windows += feed(a, segs[6:])
        assert len({w.start for w in windows}) == len(windows)


class TestOutOfOrder:
    def test_frames_swapped_within_the_lateness_bound_give_the_in_order_windows(self):
        in_order = feed(make_assembler(), frames(12))
        segs = frames(12)
        segs[3], segs[5] = segs[5], segs[3]
        a = make_assembler()
        shuffled = feed(a, segs)
        assert [w.start for w in shuffled] == [w.start for w in in_order]
        for x, y in zip(shuffled, in_order):
            assert np.allclose(x.acc, y.acc)
        assert a.stats.late_frames == 0 and a.stats.gap_windows == 0

    def test_a_frame_later_than_the_bound_is_refused_with_a_reason_and_its_windows_counted_as_gaps(self):
        a = make_assembler(lateness_s=3.0)
        segs = frames(15)
        missing = segs.pop(4)
        windows = feed(a, segs)
        outcome = a.add(missing)
        assert outcome.refused == "late"
        assert "late frame" in outcome.reason and "lateness bound 3 s" in outcome.reason
        assert a.stats.late_frames == 1
        assert a.stats.gap_windows >= 2
        hole = (missing.t0, missing.last_sample_t)
        assert all(w.end <= hole[0] or w.start > hole[1] for w in windows)


class TestGaps:
    def test_a_device_pause_is_a_gap_decided_without_waiting_for_lateness(self):
        segs = frames(6) + frames(6, t0=T0 + 30.0)
        for seq, seg in enumerate(segs):
            seg.seq = seg.offset = seq  # consecutive seqs: the device paused, nothing is missing
        a = make_assembler(lateness_s=600.0)
        windows = feed(a, segs)
        assert a.stats.gap_windows >= 1
        assert all(w.end <= T0 + 6.0 or w.start >= T0 + 30.0 for w in windows)
        assert any(w.start >= T0 + 30.0 for w in windows)

    def test_a_small_jitter_gap_is_interpolated(self):
        segs = frames(6)
        for seg in segs[3:]:
            seg.t0 += 0.05  # one missing sample period: under max_gap_s
        a = make_assembler()
        windows = feed(a, segs)
        assert a.stats.gap_windows == 0 and len(windows) >= 3


class TestRestart:
    @pytest.mark.parametrize("crash_after", [3, 7, 10])
    def test_rereading_from_the_held_offset_loses_no_window(self, crash_after):
        expected = {w.start for w in feed(make_assembler(), frames(16))}
        before_crash = make_assembler()
        written = {w.start for w in feed(before_crash, frames(16)[:crash_after])}
        held = before_crash.held_offsets()[0]
        after_restart = {w.start for w in feed(make_assembler(), frames(16)[held:])}
        assert written | after_restart == expected

    def test_held_offsets_advance_as_windows_are_decided(self):
        a = make_assembler()
        feed(a, frames(4))
        early = a.held_offsets()[0]
        feed(a, frames(12)[4:])
        assert a.held_offsets()[0] > early
