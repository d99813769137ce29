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


def broker_stamped(segs, at: float):
    """The frames as a live worker reads them: record timestamps from the broker's clock at `at` + seq."""
    for i, seg in enumerate(segs):
        seg.produced_at = at + i
    return segs


def jump_assembler() -> WindowAssembler:
    return WindowAssembler(window_s=2.56, hop_s=1.28, rate_hz=50.0, max_gap_s=0.1, lateness_s=5.0, labels=LABELS,
                           clock_jump_s=300.0, jump_confirm_frames=3)


class TestQuietDevice:
    def test_flush_decides_the_open_windows_and_releases_every_frame(self):
        a = make_assembler()
        segs = frames(7)  # the device stops mid-window
        windows = feed(a, segs)
        assert a.held_offsets() and a.quiet_devices() == ["dev-a"]
        outcome = a.flush_device("dev-a")
        assert a.held_offsets() == {} and a.quiet_devices() == []
        assert a.stats.abandoned_windows >= 1  # the window reaching past the last sample can never complete
        decided = {w.start for w in windows + outcome.windows}
        assert decided == {w.start for w in feed(make_assembler(), frames(7))}

    def test_a_hole_waiting_for_a_late_frame_becomes_a_gap_and_later_frames_still_count(self):
        a = make_assembler(lateness_s=600.0)
        segs = frames(12)
        missing = segs.pop(4)
        feed(a, segs[:6])
        a.flush_device("dev-a")
        assert a.stats.gap_windows >= 1 and a.held_offsets() == {}
        assert a.add(missing).refused == "late"  # its windows were decided: dead-lettered with a reason
        resumed = frames(8, t0=T0 + 20.0)
        for i, seg in enumerate(resumed):
            seg.seq, seg.offset = 7 + i, 12 + i  # the counter goes on: a pause, decided without waiting
        assert feed(a, resumed)  # new windows as usual


class TestClockJump:
    def test_one_frame_an_hour_ahead_is_refused_and_the_good_frames_that_follow_all_count(self):
        expected = {w.start for w in feed(make_assembler(), frames(20))}
        segs = broker_stamped(frames(20), at=T0)
        bogus = broker_stamped(frames(1, t0=T0 + 3600.0), at=T0 + 5)[0]
        bogus.seq = 99
        a = jump_assembler()
        windows = feed(a, segs[:5])
        held = a.add(bogus)
        assert held.refused == "held" and not held.windows
        nxt = a.add(segs[5])
        assert [(s.seq, "clock jump" in why) for s, why in nxt.rejected] == [(99, True)]
        windows += nxt.windows + feed(a, segs[6:])
        assert {w.start for w in windows} == expected
        assert a.stats.late_frames == 0

    def test_a_clock_that_really_jumped_starts_a_new_stream_after_three_frames(self):
        a = jump_assembler()
        old = broker_stamped(frames(6), at=T0)
        new = broker_stamped(frames(10, t0=T0 + 7200.0), at=T0 + 6)
        for seq, seg in enumerate(new):
            seg.seq, seg.offset = 100 + seq, 100 + seq
        feed(a, old)
        outcomes = [a.add(seg) for seg in new]
        assert [o.refused for o in outcomes[:2]] == ["held", "held"]
        confirmed = outcomes[2]
        assert [s.seq for s in confirmed.accepted] == [100, 101, 102] and not confirmed.rejected
        assert a.stats.clock_jumps == 1 and a.stats.late_frames == 0
        new_windows = [w for o in outcomes for w in o.windows if w.start >= T0 + 7200.0]
        assert {w.start for w in new_windows} == {w.start for w in feed(make_assembler(), frames(10, t0=T0 + 7200.0))}

    def test_a_first_frame_ahead_of_the_broker_is_held_but_an_old_replay_is_not(self):
        a = jump_assembler()
        replay = broker_stamped(frames(3, t0=T0 - 86_400.0), at=T0)  # history imported a day later
        assert all(a.add(seg).refused is None for seg in replay)
        ahead = broker_stamped(frames(1, t0=T0 + 3600.0, device="dev-b"), at=T0)[0]
        ahead.partition = 1
        assert a.add(ahead).refused == "held"
        assert a.held_offsets()[1] == ahead.offset  # held aside, the commit stays behind it
        flushed = a.flush_device("dev-b")  # quiet before confirming a jump: refused with the reason
        assert [(s.device_id, "went quiet" in why) for s, why in flushed.rejected] == [("dev-b", True)]
        assert 1 not in a.held_offsets()


class TestBounds:
    def test_huge_but_finite_accelerations_cannot_overflow_the_filter(self):
        segs = frames(6)
        for seg in segs:
            seg.acc = np.full_like(seg.acc, 3.0e38)
        windows = feed(make_assembler(rate_hz=25.0), segs)
        assert windows and all(np.isfinite(w.acc).all() for w in windows)

    def test_a_10_hz_stream_is_contiguous(self):
        a = make_assembler(rate_hz=25.0)
        windows = feed(a, frames(12, rate_hz=10.0))
        assert a.stats.gap_windows == 0 and len(windows) >= 7
