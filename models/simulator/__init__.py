"""Physics-based IMU simulator: procedural human motion on a 22-joint body, seen by virtual IMUs.

    from models.simulator import ACTIVITIES, simulate_clip, simulate_batch, PLACEMENT_JOINTS, SubjectParams
    clip = simulate_clip("walking upstairs", np.random.default_rng(0), placements=("waist", "wrist"))
    clip.imu["waist"].acc  # (T, 3) m/s^2, specific force in the device frame

See docs/simulator.md for the physics and the activity list.
"""

from models.simulator.activities import ACTIVITIES, ActivitySpec
from models.simulator.body import JOINTS, PARENTS, SubjectParams
from models.simulator.clip import Clip, SensorTrace, simulate_batch, simulate_clip
from models.simulator.imu import PLACEMENT_JOINTS, PLACEMENTS

__all__ = [
    "ACTIVITIES", "ActivitySpec", "Clip", "JOINTS", "PARENTS", "PLACEMENTS", "PLACEMENT_JOINTS", "SensorTrace",
    "SubjectParams", "simulate_batch", "simulate_clip",
]  # fmt: skip
