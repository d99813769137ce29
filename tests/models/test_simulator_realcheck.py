"""The simulator's IMU synthesis against a real foot IMU recorded with optical mocap (models/simulator/realcheck.py).

The thresholds are the ones written in realcheck.py's docstring before the first run. That first run
missed three of the 38 checks (docs/simulator.md, "Against a real foot IMU"), and this test keeps them
visible rather than loosened: every other check must hold for both shoes, and the misses may only be
the documented ones, no worse than measured then:
- left shoe, mounting 30.2 deg > 30 deg: the marker plane (toe marker on top of the toes, fifth-metatarsal
  marker low on the outside) is tilted about the heel-toe line; the right shoe shows the mirror tilt (25.6 deg);
- right shoe, gyro x (inversion/eversion) r 0.827 < 0.85, RMSE 75 deg/s > 40: the marker frame spikes
  to -500..-600 deg/s about the heel-toe axis around toe-off, where the real sensor reads about -250
  (the toe marker rides on toes that bend, so the three markers are not one rigid body then).
"""

from __future__ import annotations

import numpy as np
import pytest

from models.simulator.realcheck import FootDataUnavailable, check_foot, stride_frequency

# first-run misses: side -> failure prefix -> (metric, bound it must still meet)
DOCUMENTED_MISSES = {
    "left": {"mounting": ("mount_deg", 31.0)},
    "right": {"gyro x corr": ("gyro_corr_x", 0.82), "gyro x RMSE": ("gyro_rmse_x", 76.0)},
}


@pytest.fixture(scope="module")
def report():
    try:
        return check_foot(simulated=False)
    except FootDataUnavailable as error:  # only when pip cannot reach the registry
        pytest.skip(f"gaitmap 2.6.0 sdist could not be fetched: {error}")


def test_stride_frequency_finds_a_known_line():
    fs = 100.0
    t = np.arange(0, 30, 1 / fs)
    # a swing burst once per stride at 0.93 Hz (plus noise): the line is the stride, not a harmonic
    bursts = np.exp(8 * (np.cos(2 * np.pi * 0.93 * t) - 1)) + 0.1 * np.random.default_rng(0).normal(size=len(t))
    assert stride_frequency(bursts, fs) == pytest.approx(0.93, abs=0.005)


@pytest.mark.parametrize("side", ["left", "right"])
def test_foot_imu_from_markers_matches_the_real_sensor(report, side):
    m = report["feet"][side]
    allowed = DOCUMENTED_MISSES[side]
    unexpected = [f for f in report["failures"][side] if not any(f.startswith(prefix) for prefix in allowed)]
    assert not unexpected, f"{side}: {unexpected}"
    values = {"mount_deg": m["mount_deg"], "gyro_corr_x": m["gyro_corr"][0], "gyro_rmse_x": m["gyro_rmse_dps"][0]}
    for metric, bound in allowed.values():
        worse = values[metric] > bound if metric != "gyro_corr_x" else values[metric] < bound
        assert not worse, f"{side} {metric} {values[metric]:.3f} is worse than the documented {bound}"
    # the headline agreement, stated outright
    assert m["gyro_magnitude_corr"] >= 0.95 and m["acc_magnitude_corr"] >= 0.85
    assert abs(m["stride_hz_real"] - m["stride_hz_sim"]) <= 0.02
