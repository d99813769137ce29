"""Events: the fall rule on the raw signal, simulated event windows, HAPT's events."""

import numpy as np

from ingest.hapt import STANDARD_GRAVITY
from models.events import (EVENTS, FALL, HAPT_TRANSITION_EVENTS, NO_EVENT, free_fall_impact, hapt_event_labels,
                           simulated_event_windows)


def _signal(parts):
    """(T, 3) acc from (seconds, |a| in g) stretches at 50 Hz, along one axis."""
    g = np.concatenate([np.full(int(s * 50), v) for s, v in parts])
    return np.stack([np.zeros_like(g), np.zeros_like(g), g * STANDARD_GRAVITY], 1)


def test_the_fall_rule_needs_free_fall_then_an_impact_within_a_second():
    found = free_fall_impact(_signal([(1, 1.0), (0.2, 0.1), (0.1, 4.0), (1, 1.0)]), 50, 0.4, 2.5)
    assert found is not None and found[0] == 50 and abs(found[1] - 4.0) < 1e-6
    assert free_fall_impact(_signal([(1, 1.0), (0.04, 0.1), (0.1, 4.0), (1, 1.0)]), 50, 0.4, 2.5) is None  # too short
    assert free_fall_impact(_signal([(1, 1.0), (0.2, 0.1), (1.5, 1.0), (0.1, 4.0)]), 50, 0.4, 2.5) is None  # too late
    assert free_fall_impact(_signal([(1, 1.0), (0.2, 0.1), (1, 1.0)]), 50, 0.4, 2.5) is None  # no impact


def test_simulated_event_windows_hold_every_answer_and_splits_are_different_people():
    fit = simulated_event_windows("fit", per_event=2, progress=False)
    val = simulated_event_windows("validation", per_event=2, progress=False)
    assert fit.acc.shape == (2 * len(EVENTS), 128, 3) and fit.gyro.shape == fit.acc.shape
    assert sorted(np.bincount(fit.event).tolist()) == [2] * len(EVENTS)
    assert np.isfinite(fit.acc).all() and not np.allclose(fit.acc, val.acc)
    # a fall window holds the impact: the clip's hardest jolt lies inside it
    peak = np.linalg.norm(fit.acc[fit.event == FALL], axis=2).max(1) / STANDARD_GRAVITY
    assert (peak > 2.0).all()


def test_hapt_windows_map_transitions_to_posture_changes_and_activities_to_no_event():
    activity = np.array([0, 3, -1, -1, -1])
    transition = np.array([-1, -1, 0, 3, 5])
    assert hapt_event_labels(activity, transition).tolist() == [
        NO_EVENT, NO_EVENT, EVENTS.index(HAPT_TRANSITION_EVENTS[0]), EVENTS.index("getting up"),
        EVENTS.index("getting up")]
