"""A physical model of rooms over days: occupants, CO2, heat, moisture, light, PIR, noise, and the sensors.

Each room of a building follows its kind's schedule (office, meeting room, classroom, bedroom, corridor).
The state is integrated on a 10 s grid, all rooms of a building at once:

- CO2 (well-mixed box): V dC/dt = Q (C_out - C) + 1e6 * sum_i G_i, with Q = (ACH_vent + ACH_infil +
  ACH_window) V / 3600 and G_i the CO2 a person breathes out (m^3/s) at their activity level. With the
  inputs constant over a step the update is exact: C <- C_ss + (C - C_ss) exp(-lambda dt), where
  lambda = Q / V and C_ss = C_out + 1e6 N G / Q. A sealed room (Q = 0) rises by 1e6 N G / V ppm/s.
- heat: one lumped capacity (air plus the furniture and wall skin it exchanges with quickly) warmed by
  people (sensible heat by activity) and lights, pulled towards the HVAC set point while HVAC runs and
  towards outdoors by the envelope and the air exchange;
- moisture: absolute humidity with the same air exchange plus each person's breath and skin moisture;
  relative humidity from the saturation pressure at the room temperature (Magnus);
- light: daylight through the windows (sun elevation by hour, clouds per day) plus electric light,
  switched on by people when it is dark enough (with habits) and sometimes left on when they leave;
- PIR: each person moves at an activity-dependent rate; each movement is seen with a miss probability;
  the output stays 1 for the hold time after the last detection;
- noise: background plus speech (conversation sets the level), summed as powers.

Sensors (one room device per room) report all channels every `report_s` (10 s - 10 min) with their
resolution, noise, a slow CO2 drift (ABC-calibrated NDIR sensors wander by tens of ppm), and dropouts.
Labels per 10 s step: occupancy count, room use, window and door state, true CO2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

STEP_S = 10.0
DAY_S = 86_400.0

# What a room is used for at a moment: the labels of the room-use model.
ROOM_USES = ("empty", "office work", "meeting", "lecture", "sleeping", "resting at home", "cleaning", "passing through")

# Per person at each use: CO2 generation (L/s, ASHRAE 62.1 / Persily & de Jonge 2017 for adults at the
# activity's metabolic rate), sensible heat (W), moisture (g/h), movements seen by a PIR (per minute) and
# whether they talk (the fraction of time someone speaks).
@dataclass(frozen=True)
class Activity:
    co2_lps: float
    heat_w: float
    moisture_gph: float
    moves_per_min: float
    speech: float


ACTIVITY = {
    "office work": Activity(0.0050, 75, 50, 1.5, 0.10),  # 1.2 met, seated
    "meeting": Activity(0.0054, 75, 55, 2.0, 0.60),  # 1.3 met, seated, talking
    "lecture": Activity(0.0050, 72, 50, 1.2, 0.70),  # one speaks, many listen
    "sleeping": Activity(0.0031, 50, 35, 0.15, 0.0),  # 0.8 met
    "resting at home": Activity(0.0042, 65, 45, 1.0, 0.20),  # 1.0 met
    "cleaning": Activity(0.0110, 140, 120, 8.0, 0.0),  # 2.5 met, moving all the time
    "passing through": Activity(0.0090, 110, 90, 10.0, 0.05),  # walking
}


@dataclass(frozen=True)
class RoomKind:
    """A kind of room: its size, people, ventilation and light habits."""

    name: str
    floor_m2: tuple[float, float]
    height_m: float
    capacity: tuple[int, int]
    vent_ach: tuple[float, float]  # mechanical ventilation while HVAC runs (0: none)
    lamp_lux: tuple[float, float]
    window_lux_factor: tuple[float, float]  # daylight indoors as a fraction of outdoor horizontal lux


KINDS = {
    "office": RoomKind("office", (12, 40), 2.8, (1, 6), (0.3, 1.5), (350, 550), (0.002, 0.008)),
    "meeting room": RoomKind("meeting room", (15, 45), 2.8, (4, 16), (1.0, 3.0), (300, 500), (0.002, 0.008)),
    "classroom": RoomKind("classroom", (50, 90), 3.2, (20, 35), (1.5, 4.0), (300, 500), (0.003, 0.01)),
    "bedroom": RoomKind("bedroom", (9, 18), 2.5, (1, 2), (0.0, 0.0), (100, 250), (0.003, 0.015)),
    "corridor": RoomKind("corridor", (20, 60), 2.8, (1, 1), (0.5, 1.5), (150, 300), (0.001, 0.008)),
}


@dataclass(frozen=True)
class SensorModel:
    """The room device: its reporting interval and each channel's realism."""

    report_s: float = 60.0
    co2_noise_ppm: float = 8.0
    co2_drift_ppm_per_day: float = 10.0  # sd of a random walk
    co2_offset_ppm: float = 0.0
    temp_noise_c: float = 0.05
    temp_offset_c: float = 0.0
    rh_noise: float = 0.4
    lux_noise: float = 0.03  # relative
    pir_miss: float = 0.2  # a movement not seen
    pir_hold_s: float = 60.0
    dropout: float = 0.01  # a report lost


@dataclass
class RoomSpec:
    """One room: its geometry, people, ventilation, sensor. Built by `sample_building`."""

    room_id: str
    kind: str
    volume_m3: float
    capacity: int
    vent_ach: float
    infiltration_ach: float
    lamp_lux: float
    window_lux_factor: float
    sensor: SensorModel = field(default_factory=SensorModel)
    window_ach: float = 4.0  # extra air exchange with a window open
    door_ach: float = 1.0  # with the door open
    thermal_capacity_j_per_k: float = 0.0  # 0: from the volume
    setpoint_c: float = 21.5

    @property
    def heat_capacity(self) -> float:
        # air (1.2 kg/m^3 * 1005 J/kg/K) plus furniture and wall skin, about ten times the air
        return self.thermal_capacity_j_per_k or 12.0 * 1.2 * 1005.0 * self.volume_m3


@dataclass
class Weather:
    """Outdoor conditions of a building, one value per day (the daily swing is added per step)."""

    mean_c: np.ndarray  # (days,)
    swing_c: np.ndarray
    rh: np.ndarray
    cloud: np.ndarray  # 0 clear .. 1 overcast
    co2_ppm: float = 420.0


@dataclass
class Building:
    building_id: str
    rooms: list[RoomSpec]
    weather: Weather
    start_weekday: int  # 0 = Monday of the first simulated day
    hvac_hours: tuple[float, float] = (6.5, 19.0)


@dataclass
class RoomTrace:
    """One room's simulated days. `t` and the truth on the 10 s grid; readings on the report grid."""

    room: RoomSpec
    t: np.ndarray  # (T,) s since the building's first midnight
    occupancy: np.ndarray  # (T,) int people in the room
    use: np.ndarray  # (T,) index into ROOM_USES
    window_open: np.ndarray  # (T,) bool
    door_open: np.ndarray  # (T,) bool
    co2: np.ndarray  # (T,) true ppm
    temperature: np.ndarray
    humidity: np.ndarray  # % RH
    light: np.ndarray  # lux
    lights_on: np.ndarray  # (T,) bool electric light
    pir: np.ndarray  # (T,) 0/1 after the hold
    noise: np.ndarray  # dB
    readings_t: np.ndarray  # (R,) report times
    readings: dict[str, np.ndarray]  # channel -> (R,) with NaN where a report was lost

    @property
    def use_names(self) -> list[str]:
        return [ROOM_USES[i] for i in self.use]


# -- building and schedules ------------------------------------------------------------------------

def sample_building(building_id: str, rng: np.random.Generator, kinds: dict[str, int] | None = None,
                    days: int = 3) -> Building:
    """A building with rooms of the given kinds (default: a mixed office building or a home)."""
    if kinds is None:
        kinds = ({"office": 3, "meeting room": 2, "classroom": 1, "corridor": 1} if rng.random() < 0.75
                 else {"bedroom": 2, "office": 1})
    ventilation_scale = rng.uniform(0.6, 1.4)  # buildings differ in how well they are ventilated
    rooms = []
    for kind_name, count in kinds.items():
        kind = KINDS[kind_name]
        for i in range(count):
            floor = rng.uniform(*kind.floor_m2)
            sensor = SensorModel(
                report_s=float(rng.choice([10, 30, 60, 60, 120, 300, 600])),
                co2_noise_ppm=rng.uniform(3, 15), co2_drift_ppm_per_day=rng.uniform(2, 20),
                co2_offset_ppm=rng.normal(0, 25), temp_noise_c=rng.uniform(0.02, 0.1),
                temp_offset_c=rng.normal(0, 0.4), rh_noise=rng.uniform(0.2, 1.0),
                pir_miss=rng.uniform(0.05, 0.4), pir_hold_s=float(rng.choice([30, 60, 120, 300])),
                dropout=rng.uniform(0.0, 0.05),
            )
            rooms.append(RoomSpec(
                room_id=f"{building_id}-{kind_name.replace(' ', '')}-{i}", kind=kind_name,
                volume_m3=floor * kind.height_m, capacity=int(rng.integers(kind.capacity[0], kind.capacity[1] + 1)),
                vent_ach=rng.uniform(*kind.vent_ach) * ventilation_scale,
                infiltration_ach=rng.uniform(0.2, 0.8), lamp_lux=rng.uniform(*kind.lamp_lux),
                window_lux_factor=rng.uniform(*kind.window_lux_factor), sensor=sensor,
                window_ach=rng.uniform(2, 8), setpoint_c=rng.uniform(20.5, 22.5),
            ))
    weather = Weather(mean_c=rng.uniform(-2, 22) + rng.normal(0, 2, days), swing_c=rng.uniform(3, 9, days),
                      rh=rng.uniform(55, 90, days), cloud=rng.uniform(0, 1, days), co2_ppm=rng.uniform(400, 440))
    return Building(building_id, rooms, weather, start_weekday=int(rng.integers(0, 7)))


def _span(use: np.ndarray, occ: np.ndarray, start_s: float, end_s: float, n: int, activity: str) -> None:
    a, b = int(max(0, start_s) // STEP_S), int(max(0, end_s) // STEP_S)
    use[a:b] = ROOM_USES.index(activity)
    occ[a:b] = np.maximum(occ[a:b], n) if activity != "passing through" else occ[a:b] + n


def schedule(room: RoomSpec, days: int, start_weekday: int, rng: np.random.Generator):
    """Occupancy count, use and window/door state per 10 s step over `days` days."""
    steps = int(days * DAY_S / STEP_S)
    occ = np.zeros(steps, np.int64)
    use = np.zeros(steps, np.int64)
    window = np.zeros(steps, bool)
    door = np.zeros(steps, bool)
    h = 3600.0
    for day in range(days):
        base = day * DAY_S
        workday = (start_weekday + day) % 7 < 5
        if room.kind == "office" and workday:
            for _ in range(room.capacity):  # each desk's person, independently
                if rng.random() < 0.15:
                    continue  # away today
                arrive, lunch = rng.normal(8.6, 0.6) * h, rng.normal(12.3, 0.4) * h
                back, leave = lunch + rng.uniform(0.5, 1.0) * h, rng.normal(17.2, 0.7) * h
                a, b = int((base + arrive) // STEP_S), int((base + lunch) // STEP_S)
                occ[a:b] += 1
                a, b = int((base + back) // STEP_S), int((base + leave) // STEP_S)
                occ[a:b] += 1
            use[(occ > 0) & (use == 0)] = ROOM_USES.index("office work")
        elif room.kind == "meeting room" and workday:
            t = 8.0 * h
            while t < 18 * h:
                if rng.random() < 0.55:
                    length = rng.choice([0.5, 1.0, 1.0, 1.5]) * h
                    people = int(rng.integers(2, room.capacity + 1))
                    if rng.random() < 0.08:
                        people = room.capacity + int(rng.integers(1, 4))  # over capacity happens
                    _span(use, occ, base + t + rng.uniform(-300, 300), base + t + length, people, "meeting")
                    t += length
                t += 0.5 * h
        elif room.kind == "classroom" and workday:
            for start in (8.0, 10.0, 13.0, 15.0):
                if rng.random() < 0.75:
                    people = int(rng.integers(max(5, room.capacity // 3), room.capacity + 1))
                    _span(use, occ, base + start * h + rng.uniform(-600, 120), base + (start + 1.5) * h, people,
                          "lecture")
        elif room.kind == "bedroom":
            sleep, wake = rng.normal(23.0, 0.7) * h, rng.normal(7.0 if workday else 8.5, 0.5) * h
            people = room.capacity
            if day == 0:  # the night before the first day
                _span(use, occ, 0, base + wake, people, "sleeping")
            _span(use, occ, base + sleep, base + 24 * h + wake, people, "sleeping")
            if rng.random() < 0.6:  # some evening time in the room before sleeping
                _span(use, occ, base + sleep - rng.uniform(0.3, 1.5) * h, base + sleep, 1, "resting at home")
            if rng.random() < 0.5:  # airing in the morning
                a = int((base + wake + rng.uniform(0, 0.5) * h) // STEP_S)
                window[a:a + int(rng.uniform(5, 30) * 60 // STEP_S)] = True
            if not workday and rng.random() < 0.5:
                s = rng.uniform(13, 17) * h
                _span(use, occ, base + s, base + s + rng.uniform(0.5, 2) * h, 1, "resting at home")
        elif room.kind == "corridor":
            busy = (7.5, 18.5) if workday else (10.0, 14.0)
            rate = rng.uniform(0.3, 1.5) if workday else rng.uniform(0.0, 0.1)  # people per minute
            n = rng.poisson(rate * (busy[1] - busy[0]) * 60)
            for start in rng.uniform(busy[0] * h, busy[1] * h, n):
                _span(use, occ, base + start, base + start + rng.uniform(10, 40), 1, "passing through")
        if room.kind in ("office", "meeting room", "classroom", "corridor") and rng.random() < 0.8:
            start = rng.uniform(18.5, 21.0) * h if workday else rng.uniform(9, 11) * h
            if workday or rng.random() < 0.2:
                _span(use, occ, base + start, base + start + rng.uniform(8, 25) * 60, 1, "cleaning")
        if room.kind in ("office", "classroom") and workday and rng.random() < 0.3:
            a = int((base + rng.uniform(10, 15) * h) // STEP_S)
            window[a:a + int(rng.uniform(10, 45) * 60 // STEP_S)] = True
    # the door stands open while people come and go, and often while someone is in an office
    change = np.r_[False, np.diff(occ) != 0]
    door |= np.convolve(change, np.ones(6), "same") > 0
    if room.kind in ("office", "corridor"):
        door |= occ > 0
    use[occ == 0] = 0
    return occ, use, window, door


# -- physics ---------------------------------------------------------------------------------------

def saturation_pressure_hpa(t_c):
    """Magnus formula over water, hPa."""
    return 6.112 * np.exp(17.62 * t_c / (243.12 + t_c))


def humidity_ratio(t_c, rh, p_hpa=1013.25):
    """kg water per kg dry air."""
    pw = rh / 100 * saturation_pressure_hpa(t_c)
    return 0.622 * pw / (p_hpa - pw)


def relative_humidity(t_c, w, p_hpa=1013.25):
    pw = w * p_hpa / (0.622 + w)
    return np.clip(100 * pw / saturation_pressure_hpa(t_c), 0, 100)


def co2_step(c, n_gen_m3s, lam_per_s, c_out, volume_m3, dt):
    """Exact CO2 update over `dt` with constant generation (m^3/s in total) and air-exchange rate lambda.
    lambda = 0 (sealed) gives the linear rise 1e6 G dt / V."""
    source = 1e6 * n_gen_m3s / volume_m3  # ppm/s
    lam = np.asarray(lam_per_s, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = np.exp(-lam * dt)
        stepped = c_out + source / lam + (c - c_out - source / lam) * decay
    return np.where(lam > 1e-12, stepped, c + source * dt)


def outdoor(weather: Weather, t: np.ndarray):
    """Outdoor temperature, RH and horizontal illuminance (lux) at times t (s from the first midnight)."""
    day = np.minimum((t // DAY_S).astype(int), len(weather.mean_c) - 1)
    hour = (t % DAY_S) / 3600
    temp = weather.mean_c[day] + weather.swing_c[day] / 2 * np.cos(2 * np.pi * (hour - 15) / 24)
    rh = np.clip(weather.rh[day] - 15 * np.cos(2 * np.pi * (hour - 15) / 24), 20, 100)
    elevation = np.sin(np.pi * (hour - 6.5) / 12)  # a crude sun: up 6:30-18:30, highest at 12:30
    lux = np.where(elevation > 0, 80_000 * np.clip(elevation, 0, None) ** 1.3 * (1 - 0.8 * weather.cloud[day]), 0.0)
    return temp, rh, lux


def simulate_building(building: Building, days: int, rng: np.random.Generator, plans=None) -> list[RoomTrace]:
    """Every room of `building` over `days` days; rooms are integrated together, step by step.
    `plans`: per room (occupancy, use, window, door) arrays on the 10 s grid instead of the schedules."""
    rooms = building.rooms
    steps = int(days * DAY_S / STEP_S)
    t = np.arange(steps) * STEP_S
    plans = plans or [schedule(room, days, building.start_weekday, rng) for room in rooms]
    occ = np.stack([p[0] for p in plans])
    use = np.stack([p[1] for p in plans])
    window = np.stack([p[2] for p in plans])
    door = np.stack([p[3] for p in plans])
    t_out, rh_out, lux_out = outdoor(building.weather, t)
    hour = (t % DAY_S) / 3600
    workday = ((building.start_weekday + t // DAY_S) % 7) < 5
    hvac_on = workday & (hour >= building.hvac_hours[0]) & (hour < building.hvac_hours[1])

    table = np.zeros((len(ROOM_USES), 5))  # per use: CO2 m^3/s, heat W, moisture kg/s, moves/s, speech
    for name, a in ACTIVITY.items():
        table[ROOM_USES.index(name)] = (a.co2_lps / 1000, a.heat_w, a.moisture_gph / 3600 / 1000,
                                        a.moves_per_min / 60, a.speech)
    per_person = table[use]  # (rooms, steps, 5)

    vol = np.array([r.volume_m3 for r in rooms])
    vent = np.array([r.vent_ach for r in rooms])[:, None] * hvac_on[None]
    lam = (vent + np.array([r.infiltration_ach for r in rooms])[:, None]
           + window * np.array([r.window_ach for r in rooms])[:, None]
           + door * np.array([r.door_ach for r in rooms])[:, None]) / 3600.0  # (rooms, steps) 1/s
    heat_cap = np.array([r.heat_capacity for r in rooms])
    setpoint = np.array([r.setpoint_c for r in rooms])
    ua = 2.0 * vol ** (2 / 3)  # W/K envelope: about 2 W/m^2K over the room's outer surface
    # heating/cooling holds the set point while HVAC runs and a setback (2 K lower) otherwise; a
    # proportional controller sized for the room's design loss (ventilated, 25 K colder outside)
    design = ua + 1.2 * 1005 * (np.array([r.vent_ach for r in rooms]) + 0.5) / 3600 * vol
    gain, limit = 6.0 * design, 25.0 * design

    # lights: on while someone is in and it is dark enough (most people), sometimes left on after they leave
    daylight = lux_out[None] * np.array([r.window_lux_factor for r in rooms])[:, None]
    lamp = np.array([r.lamp_lux for r in rooms])[:, None]
    lights = np.zeros_like(occ, bool)
    for i, room in enumerate(rooms):
        habit = rng.uniform(0.6, 1.0)  # how often people switch on even with some daylight
        left_on = rng.uniform(0.0, 0.3)
        on = False
        sleeping = use[i] == ROOM_USES.index("sleeping")
        change = np.flatnonzero(np.r_[True, (np.diff(occ[i]) != 0) | (np.diff(use[i]) != 0)])
        ends = np.r_[change[1:], steps]
        for a, b in zip(change, ends):
            if occ[i, a] > 0 and not sleeping[a]:
                dark = daylight[i, a] < 300
                on = on or dark or rng.random() < habit * 0.5
            elif occ[i, a] > 0 and sleeping[a]:
                on = False
            else:
                on = on and rng.random() < left_on
            lights[i, a:b] = on
        if left_on > 0:  # a light left on goes off at the building's evening round (or the next morning)
            left = lights[i] & (occ[i] == 0)
            lights[i] &= ~(left & ((hour > 22) | (hour < 6)))
    light = daylight + lights * lamp

    # integrate CO2, temperature and moisture together
    co2 = np.empty((len(rooms), steps))
    temp = np.empty_like(co2)
    w = np.empty_like(co2)
    c = np.full(len(rooms), building.weather.co2_ppm + rng.uniform(0, 40, len(rooms)))
    tc = setpoint - rng.uniform(0.5, 2.0, len(rooms))
    wr = humidity_ratio(tc, rh_out[0] * 0.7)
    w_out = humidity_ratio(t_out, rh_out)
    rho = 1.2
    for k in range(steps):
        n = occ[:, k]
        pp = per_person[:, k]
        c = co2_step(c, n * pp[:, 0], lam[:, k], building.weather.co2_ppm, vol, STEP_S)
        heat = n * pp[:, 1] + lights[:, k] * lamp[:, 0] * vol / 2.8 * 0.02  # lamps: ~8 W/m^2 at 400 lux
        heat = heat + (ua + rho * 1005 * lam[:, k] * vol) * (t_out[k] - tc)
        target = setpoint - np.where(hvac_on[k], 0.0, 2.0)
        heat = heat + np.clip(gain * (target - tc), -limit, limit)
        tc = tc + heat / heat_cap * STEP_S
        wr = wr + (lam[:, k] * (w_out[k] - wr) + n * pp[:, 2] / (rho * vol)) * STEP_S
        co2[:, k], temp[:, k], w[:, k] = c, tc, wr
    rh = relative_humidity(temp, w)

    # PIR: movements (Poisson per step), each seen unless missed, held high for the hold time
    moves = rng.poisson(occ * per_person[..., 3] * STEP_S)
    # speech: someone talks with the use's probability when at least two people are in (a lecture: one)
    talking = (rng.random(occ.shape) < per_person[..., 4]) & (occ >= 1)
    speech_db = np.where(talking, rng.normal(58, 4, occ.shape) + 3 * np.log10(np.maximum(occ, 1)), -np.inf)
    cleaning = use == ROOM_USES.index("cleaning")
    machine_db = np.where(cleaning & (rng.random(occ.shape) < 0.6), rng.normal(65, 4, occ.shape), -np.inf)
    background = 32 + 4 * hvac_on[None]
    noise = 10 * np.log10(10 ** (background / 10) + 10 ** (speech_db / 10) + 10 ** (machine_db / 10))
    noise = noise + rng.normal(0, 1.0, occ.shape)

    traces = []
    for i, room in enumerate(rooms):
        s = room.sensor
        seen = rng.binomial(moves[i], 1 - s.pir_miss) > 0
        hold = int(math.ceil(s.pir_hold_s / STEP_S))
        last = np.where(seen, np.arange(steps), -10**9)
        last = np.maximum.accumulate(last)
        pir = (np.arange(steps) - last) < hold
        traces.append(_read(room, t, occ[i], use[i], window[i], door[i], co2[i], temp[i], rh[i], light[i],
                            lights[i], pir, noise[i], rng))
    return traces


def _read(room, t, occ, use, window, door, co2, temp, rh, light, lights, pir, noise, rng) -> RoomTrace:
    """What the room device reports: every report_s, each channel through its sensor's imperfections."""
    s = room.sensor
    every = max(1, int(round(s.report_s / STEP_S)))
    index = np.arange(rng.integers(0, every), len(t), every)
    days = t[index] / DAY_S
    drift = np.cumsum(rng.normal(0, s.co2_drift_ppm_per_day * math.sqrt(1 / max(len(index), 1) * days[-1] + 1e-9),
                                 len(index))) if len(index) else np.zeros(0)
    # PIR reports whether it triggered at all since the last report (what event-driven PIRs send)
    pir_any = np.maximum.reduceat(pir.astype(float), index) if len(index) else np.zeros(0)
    readings = {
        "co2": np.round(co2[index] + s.co2_offset_ppm + drift + rng.normal(0, s.co2_noise_ppm, len(index))),
        "temperature": np.round(temp[index] + s.temp_offset_c + rng.normal(0, s.temp_noise_c, len(index)), 1),
        "humidity": np.clip(np.round((rh[index] + rng.normal(0, s.rh_noise, len(index))) * 2) / 2, 0, 100),
        "light": np.round(np.maximum(0, light[index] * (1 + rng.normal(0, s.lux_noise, len(index))))),
        "noise": np.round(noise[index] * 2) / 2,
        "pir": pir_any,
    }
    readings["co2"] = np.clip(readings["co2"], 300, 10_000)  # NDIR sensors' floor and range
    lost = rng.random(len(index)) < s.dropout
    for name in readings:
        readings[name] = readings[name].astype(np.float64)
        readings[name][lost] = np.nan
    return RoomTrace(room, t, occ, use, window, door, co2, temp, rh, light, lights, pir.astype(np.int8), noise,
                     t[index], readings)


def simulate_buildings(n: int, seed: int, days: int = 3, first: int = 0, kinds: dict[str, int] | None = None,
                       progress: bool = False) -> list[RoomTrace]:
    """Rooms of buildings `first .. first + n - 1`: building k is always the same for the same seed."""
    traces = []
    buildings = range(first, first + n)
    if progress:
        from tqdm import tqdm

        buildings = tqdm(buildings, desc="simulating buildings", unit="building")
    for k in buildings:
        rng = np.random.default_rng([seed, k])
        building = sample_building(f"b{k:03d}", rng, kinds=kinds, days=days)
        traces.extend(simulate_building(building, days, rng))
    return traces
