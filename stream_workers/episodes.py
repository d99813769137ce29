"""Consecutive window results merged into activity episodes, with hysteresis.

An episode switches to a new activity only after `min_windows` consecutive windows agree on it: a
single noisy window (one "standing" inside a long "walking") is absorbed into the running episode
instead of splitting it in three. The switch is dated back to the first of the agreeing windows.
A pause in the device's windows longer than `max_gap_s` closes the episode where its data ended.
`export`/`restore` carry a device's state to the worker that takes it over (a Faust table), so an
episode open across a restart or a rebalance continues instead of being cut in two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from stream_workers.records import Episode, WindowResult


@dataclass
class _DeviceEpisodes:
    current: Episode
    votes: list[float]  # probabilities of windows that voted for the current activity
    last_window_start: float
    last_window_end: float
    challengers: list[WindowResult] = field(default_factory=list)  # trailing run of another activity


class EpisodeTracker:
    """Feed results per device in window order; get back the episodes that changed."""

    def __init__(self, min_windows: int = 2, max_gap_s: float = 5.0):
        self.min_windows = max(1, min_windows)
        self.max_gap_s = max_gap_s
        self._devices: dict[str, _DeviceEpisodes] = {}

    def export(self, device_id: str) -> dict | None:
        """The device's open episode and hysteresis state as JSON-able data (None: nothing open)."""
        state = self._devices.get(device_id)
        if state is None:
            return None
        return {"current": asdict(state.current), "votes": list(state.votes),
                "last_window_start": state.last_window_start, "last_window_end": state.last_window_end,
                "challengers": [asdict(r) for r in state.challengers]}

    def restore(self, device_id: str, state: dict | None) -> None:
        """Continue the device where an earlier worker left it (a window it saw is then skipped)."""
        if not state or device_id in self._devices:
            return
        self._devices[device_id] = _DeviceEpisodes(
            Episode(**state["current"]), list(state["votes"]), state["last_window_start"],
            state["last_window_end"], [WindowResult(**r) for r in state["challengers"]])

    def forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)

    def current(self, device_id: str) -> Episode | None:
        state = self._devices.get(device_id)
        return state.current if state else None

    def update(self, result: WindowResult) -> list[Episode]:
        """Episodes closed or changed by this result: closed ones first, then the open one."""
        state = self._devices.get(result.device_id)
        if state is None:
            self._devices[result.device_id] = self._open(result, [result])
            return [self._devices[result.device_id].current]
        if result.window_start <= state.last_window_start:
            return []  # a window seen already (re-read after a restart)
        if result.window_start - state.last_window_end > self.max_gap_s:
            closed = self._close(state, state.last_window_end)
            self._devices[result.device_id] = self._open(result, [result])
            return [closed, self._devices[result.device_id].current]

        state.last_window_start, state.last_window_end = result.window_start, result.window_end
        if result.activity == state.current.activity:
            self._absorb(state, state.challengers + [result])
            return [state.current]
        if state.challengers and state.challengers[-1].activity != result.activity:
            self._absorb(state, state.challengers)  # an earlier challenger lost: it was noise
        state.challengers.append(result)
        if len(state.challengers) < self.min_windows:
            state.current.end = result.window_end
            return [state.current]
        run = state.challengers
        closed = self._close(state, run[0].window_start)
        self._devices[result.device_id] = self._open(run[0], run)
        return [closed, self._devices[result.device_id].current]

    def _open(self, first: WindowResult, run: list[WindowResult]) -> _DeviceEpisodes:
        votes = [r.probability for r in run]
        episode = Episode(
            device_id=first.device_id,
            start=first.window_start,
            end=run[-1].window_end,
            activity=first.activity,
            confidence=sum(votes) / len(votes),
            windows=len(run),
            model_version=run[-1].model_version,
        )
        return _DeviceEpisodes(episode, votes, run[-1].window_start, run[-1].window_end)

    def _absorb(self, state: _DeviceEpisodes, results: list[WindowResult]) -> None:
        episode = state.current
        for r in results:
            if r.activity == episode.activity:
                state.votes.append(r.probability)
            episode.windows += 1
            episode.end = max(episode.end, r.window_end)
            episode.model_version = r.model_version
        episode.confidence = sum(state.votes) / len(state.votes)
        state.challengers = []

    @staticmethod
    def _close(state: _DeviceEpisodes, end: float) -> Episode:
        episode = state.current
        episode.end = end
        episode.closed = True
        return episode
