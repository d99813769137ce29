"""EpisodeTracker: merging consecutive windows, hysteresis against noisy windows, pauses."""

from __future__ import annotations

from stream_workers.episodes import EpisodeTracker
from stream_workers.records import WindowResult

HOP = 1.28


def results(activities: str, device: str = "dev-a", start: float = 1000.0, probability: float = 0.9):
    """One result per letter (w=walking, s=sitting, t=standing), on consecutive hops."""
    names = {"w": "walking", "s": "sitting", "t": "standing"}
    return [
        WindowResult(
            device_id=device, window_start=start + i * HOP, window_end=start + i * HOP + 2 * HOP,
            model_version="v1", activity=names[a], probability=probability, distribution={},
        )
        for i, a in enumerate(activities)
    ]


def closed_episodes(tracker: EpisodeTracker, rs) -> list:
    return [e for r in rs for e in tracker.update(r) if e.closed]


class TestMerging:
    def test_consecutive_windows_of_one_activity_are_one_episode(self):
        tracker = EpisodeTracker(min_windows=2)
        assert closed_episodes(tracker, results("wwwwww")) == []
        episode = tracker.current("dev-a")
        assert episode.activity == "walking" and episode.windows == 6
        assert episode.start == 1000.0 and abs(episode.end - (1000.0 + 7 * HOP)) < 1e-9
        assert abs(episode.confidence - 0.9) < 1e-9

    def test_a_lasting_change_closes_the_episode_where_the_change_began(self):
        tracker = EpisodeTracker(min_windows=2)
        rs = results("wwwwsss")
        closed = closed_episodes(tracker, rs)
        assert [(e.activity, e.windows) for e in closed] == [("walking", 4)]
        assert closed[0].end == rs[4].window_start
        assert tracker.current("dev-a").activity == "sitting"
        assert tracker.current("dev-a").start == rs[4].window_start


class TestHysteresis:
    def test_one_noisy_window_does_not_split_an_episode(self):
        tracker = EpisodeTracker(min_windows=2)
        assert closed_episodes(tracker, results("wwwtwwwsww")) == []
        episode = tracker.current("dev-a")
        assert episode.activity == "walking" and episode.windows == 10

    def test_alternating_noise_never_wins(self):
        tracker = EpisodeTracker(min_windows=3)
        assert closed_episodes(tracker, results("wwwsstwwsst")) == []

    def test_without_hysteresis_every_change_splits(self):
        tracker = EpisodeTracker(min_windows=1)
        assert len(closed_episodes(tracker, results("wwtww"))) == 2


class TestPausesAndRepeats:
    def test_a_pause_closes_the_episode_at_its_last_window(self):
        tracker = EpisodeTracker(min_windows=2, max_gap_s=5.0)
        first = results("www")
        later = results("www", start=first[-1].window_end + 60.0)
        closed = closed_episodes(tracker, first + later)
        assert len(closed) == 1 and closed[0].end == first[-1].window_end

    def test_a_window_seen_again_changes_nothing(self):
        tracker = EpisodeTracker(min_windows=2)
        rs = results("wwss")
        for r in rs:
            tracker.update(r)
        assert tracker.update(rs[1]) == []

    def test_devices_are_tracked_apart(self):
        tracker = EpisodeTracker(min_windows=2)
        for a, b in zip(results("wwww", device="a"), results("ssss", device="b")):
            tracker.update(a)
            tracker.update(b)
        assert tracker.current("a").activity == "walking" and tracker.current("b").activity == "sitting"
