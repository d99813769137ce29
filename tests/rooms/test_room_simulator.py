"""The room simulator: CO2 mass balance against its analytic solutions, schedules, sensors, real series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.rooms.simulator import (
    ACTIVITY, DAY_S, ROOM_USES, STEP_S, Building, RoomSpec, SensorModel, Weather, co2_step, simulate_building,
    simulate_buildings,
)  # fmt: skip

HOURS = 0.25  # of a day: 6 h


def _room(**overrides) -> RoomSpec:
    spec = dict(room_id="r", kind="office", volume_m3=50.0, capacity=4, vent_ach=0.0, infiltration_ach=0.0,
                lamp_lux=400.0, window_lux_factor=0.01, window_ach=0.0, door_ach=0.0,
                sensor=SensorModel(report_s=60.0, dropout=0.0))
    spec.update(overrides)
    return RoomSpec(**spec)


def _run(room: RoomSpec, occupancy: np.ndarray, use: str = "office work"):
    weather = Weather(mean_c=np.array([5.0]), swing_c=np.array([4.0]), rh=np.array([70.0]), cloud=np.array([0.5]),
                      co2_ppm=420.0)
    building = Building("test", [room], weather, start_weekday=0)
    steps = len(occupancy)
    plan = (occupancy, np.where(occupancy > 0, ROOM_USES.index(use), 0), np.zeros(steps, bool), np.zeros(steps, bool))
    return simulate_building(building, HOURS, np.random.default_rng(0), plans=[plan])[0]


def test_a_sealed_room_rises_by_the_generation_over_its_volume():
    steps = int(HOURS * DAY_S / STEP_S)
    people, volume = 3, 50.0
    trace = _run(_room(volume_m3=volume), np.full(steps, people))
    expected_ppm_per_min = people * ACTIVITY["office work"].co2_lps / 1000 * 1e6 / volume * 60  # 18 ppm/min
    per_min = np.diff(trace.co2[:: int(60 / STEP_S)])
    assert expected_ppm_per_min == pytest.approx(18.0)
    assert per_min == pytest.approx(np.full_like(per_min, expected_ppm_per_min), rel=1e-9)


def test_an_emptied_room_decays_with_the_air_exchange_time_constant():
    steps = int(HOURS * DAY_S / STEP_S)
    ach = 1.5
    occupancy = np.zeros(steps, np.int64)
    occupancy[: steps // 3] = 8  # fill it, then leave
    trace = _run(_room(infiltration_ach=ach), occupancy, use="meeting")
    after = np.arange(steps // 3, steps)
    excess = trace.co2[after] - 420.0
    assert excess[0] > 500
    tau_s = 3600 / ach
    elapsed = (after - after[0] + 1) * STEP_S
    assert excess == pytest.approx(excess[0] * np.exp(-(elapsed - STEP_S) / tau_s), rel=1e-9)
    # and with people the level settles at C_out + 1e6 N G / Q
    g = 8 * ACTIVITY["meeting"].co2_lps / 1000
    steady = 420.0 + 1e6 * g / (ach * 50.0 / 3600)
    k = steps // 3 - 1  # co2[k] is the state k steps after co2[0]
    assert trace.co2[k] == pytest.approx(steady - (steady - trace.co2[0]) * math.exp(-k * STEP_S / tau_s), rel=1e-9)


def test_the_exact_step_reduces_to_the_sealed_rise_as_the_air_exchange_vanishes():
    sealed = co2_step(np.array([600.0]), 1e-5, 0.0, 420.0, 40.0, 60.0)
    nearly = co2_step(np.array([600.0]), 1e-5, 1e-9, 420.0, 40.0, 60.0)
    assert sealed[0] == pytest.approx(600.0 + 1e6 * 1e-5 / 40 * 60)
    assert nearly[0] == pytest.approx(sealed[0], rel=1e-6)


def test_people_warm_and_moisten_a_room():
    steps = int(HOURS * DAY_S / STEP_S)
    empty = _run(_room(infiltration_ach=0.5), np.zeros(steps, np.int64))
    full = _run(_room(infiltration_ach=0.5), np.full(steps, 4))
    assert full.temperature[-1] > empty.temperature[-1] + 0.2
    assert full.humidity[-1] > empty.humidity[-1] + 1.0


@pytest.fixture(scope="module")
def buildings():
    return simulate_buildings(3, seed=5, days=2)


def test_schedules_follow_their_room_kind(buildings):
    hour = (buildings[0].t % DAY_S) / 3600
    night = (hour < 5)
    for trace in buildings:
        uses = {ROOM_USES[u] for u in np.unique(trace.use)}
        if trace.room.kind in ("office", "meeting room", "classroom", "corridor"):
            assert trace.occupancy[night].max() == 0, trace.room.room_id
            assert uses <= {"empty", "office work", "meeting", "lecture", "cleaning", "passing through"}
        if trace.room.kind == "bedroom":
            assert (trace.use[night] == ROOM_USES.index("sleeping")).mean() > 0.9
        assert (trace.occupancy[trace.use == 0] == 0).all()  # empty means nobody in
        assert (trace.occupancy[trace.use > 0] > 0).all()


def test_sensors_report_on_their_interval_with_resolution_and_losses(buildings):
    for trace in buildings:
        s = trace.room.sensor
        assert np.allclose(np.diff(trace.readings_t), s.report_s)
        co2 = trace.readings["co2"]
        ok = np.isfinite(co2)
        assert (co2[ok] == np.round(co2[ok])).all()
        assert 1 - ok.mean() < s.dropout + 0.05
        t = np.round(trace.readings["temperature"][ok] * 10)
        assert np.allclose(trace.readings["temperature"][ok] * 10, t, atol=1e-6)
        # the reading tracks the truth within offset + drift + noise
        true = np.interp(trace.readings_t[ok], trace.t, trace.co2)
        assert np.median(np.abs(co2[ok] - true - s.co2_offset_ppm)) < 60
        # the PIR is held: it never reads 1 in a room that stayed empty for longer than its hold
        hold = int(math.ceil(s.pir_hold_s / STEP_S))
        empty_long = np.convolve(trace.occupancy > 0, np.ones(hold + 1))[: len(trace.t)] == 0  # nobody for a hold
        assert trace.pir[empty_long].max(initial=0) == 0


def test_lights_follow_people_and_daylight(buildings):
    for trace in buildings:
        hour = (trace.t % DAY_S) / 3600
        dark_empty = (trace.occupancy == 0) & ((hour < 5) | (hour > 23))
        assert (trace.light[dark_empty] == 0).all()
        lit = trace.lights_on & (trace.occupancy > 0)
        if lit.any():
            assert np.median(trace.light[lit]) >= trace.room.lamp_lux


def test_the_real_series_load_and_compare():
    pytest.importorskip("river")
    from models.rooms.real import appliances_house, uci_occupancy
    from models.rooms.validate import co2_decay_hours, co2_rise_ppm_per_h

    office = uci_occupancy()
    assert len(office.t) == 509 and office.interval_s == 960
    assert 300 < np.median(office.channels["co2"]) < 700
    assert co2_rise_ppm_per_h(office.t, office.channels["co2"]) > 100
    assert 0.5 < co2_decay_hours(office.t, office.channels["co2"], office.channels["light"]) < 5
    house = appliances_house()
    assert house["parents room"].interval_s == 600 and len(house["parents room"].t) == 19735
