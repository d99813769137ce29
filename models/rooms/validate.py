"""`python -m models.rooms.validate [--figure docs/rooms.png] [--json]`: simulated rooms against real series.

The same statistics are computed on the real, unlabelled series (models.rooms.real) and on simulated
rooms of the matching kind, read at the real series' interval:
- value ranges (1st, 50th, 99th percentile) per channel;
- CO2 rise rate while a room fills (90th percentile of positive slopes, ppm/h) and the decay time
  constant after the room empties (log-linear fit of C - C_out over the first two hours after the
  evening's lights go off);
- the daily pattern (median CO2 and light by hour on workdays);
- light on/off: the fraction of time lit (> 100 lux), switch-ons per day, the lux level when lit;
- for the appliances house: bedroom temperature swing per day and humidity range.
"""

from __future__ import annotations

import json

import numpy as np

from models.rooms.real import appliances_house, uci_occupancy
from models.rooms.simulator import DAY_S, simulate_buildings

LIT_LUX = 100.0


def _hours(t: np.ndarray) -> np.ndarray:
    return (t % DAY_S) / 3600


def ranges(values: np.ndarray) -> list[float]:
    v = values[np.isfinite(values)]
    return [round(float(x), 1) for x in np.percentile(v, [1, 50, 99])]


def co2_rise_ppm_per_h(t: np.ndarray, co2: np.ndarray) -> float:
    slope = np.diff(co2) / (np.diff(t) / 3600)
    rising = slope[np.isfinite(slope) & (slope > 20)]
    return float(np.percentile(rising, 90)) if len(rising) else 0.0


def co2_decay_hours(t: np.ndarray, co2: np.ndarray, light: np.ndarray, outdoor_ppm: float | None = None) -> float:
    """The median decay time constant after the light goes off (its last switch-off of a day)."""
    floor = outdoor_ppm if outdoor_ppm is not None else float(np.nanpercentile(co2, 1)) - 10
    lit = light > LIT_LUX
    taus = []
    for off in np.flatnonzero(lit[:-1] & ~lit[1:]) + 1:
        stretch = (t >= t[off]) & (t <= t[off] + 2 * 3600)
        if lit[stretch].any() or stretch.sum() < 4:
            continue
        excess = co2[stretch] - floor
        if excess[0] < 100 or (excess <= 5).any() or not np.isfinite(excess).all():
            continue
        slope = np.polyfit(t[stretch] - t[off], np.log(excess), 1)[0]
        if slope < 0:
            taus.append(-1 / slope / 3600)
    return float(np.median(taus)) if taus else float("nan")


def light_stats(t: np.ndarray, light: np.ndarray) -> dict:
    lit = light > LIT_LUX
    days = (t[-1] - t[0]) / DAY_S
    return {"lit_fraction": round(float(lit.mean()), 3),
            "switch_ons_per_day": round(float((lit[1:] & ~lit[:-1]).sum() / max(days, 1e-9)), 2),
            "lit_lux_median": round(float(np.median(light[lit])), 1) if lit.any() else 0.0}


def daily_profile(t: np.ndarray, values: np.ndarray, workdays: np.ndarray) -> np.ndarray:
    """Median by hour of day (24,) over workday samples."""
    h = _hours(t).astype(int)
    out = np.full(24, np.nan)
    for hour in range(24):
        sel = workdays & (h == hour) & np.isfinite(values)
        if sel.any():
            out[hour] = np.median(values[sel])
    return out


def _uci_workdays(t: np.ndarray) -> np.ndarray:
    return (((t // DAY_S).astype(int) + 3) % 7) < 5  # 1970-01-01 was a Thursday: day index + 3 = Monday 0


def series_stats(t, channels, workdays) -> dict:
    stats = {"ranges": {name: ranges(v) for name, v in channels.items()}}
    if "co2" in channels:
        stats["co2_rise_ppm_per_h"] = round(co2_rise_ppm_per_h(t, channels["co2"]), 1)
        stats["co2_decay_tau_h"] = round(co2_decay_hours(t, channels["co2"], channels["light"]), 2)
    if "light" in channels:
        stats["light"] = light_stats(t, channels["light"])
    stats["daily_co2"] = daily_profile(t, channels["co2"], workdays).round(0).tolist() if "co2" in channels else None
    stats["daily_light"] = daily_profile(t, channels["light"], workdays).round(0).tolist() if "light" in channels else None
    return stats


def simulated_as_read(trace, interval_s: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A simulated room's sensor readings resampled to `interval_s` (last report before each time)."""
    t = np.arange(trace.t[0] + interval_s, trace.t[-1], interval_s)
    channels = {}
    for name in ("temperature", "humidity", "light", "co2"):
        r = trace.readings[name]
        ok = np.isfinite(r)
        index = np.searchsorted(trace.readings_t[ok], t, side="right") - 1
        channels[name] = np.where(index >= 0, r[ok][np.maximum(index, 0)], np.nan)
    return t, channels


def simulated_offices(n_buildings: int = 6, seed: int = 1, days: int = 6):
    traces = simulate_buildings(n_buildings, seed=seed, days=days, kinds={"office": 3})
    homes = simulate_buildings(3, seed=seed, days=days, first=n_buildings, kinds={"bedroom": 2})
    return traces, homes


def compare(n_buildings: int = 6, seed: int = 1) -> dict:
    real = uci_occupancy()
    offices, bedrooms = simulated_offices(n_buildings, seed)
    sim = []
    for trace in offices:
        t, channels = simulated_as_read(trace, real.interval_s)
        day = (t // DAY_S).astype(int)
        workdays = np.array([_is_workday(trace, d) for d in day])
        sim.append(series_stats(t, channels, workdays))
    report = {"uci_occupancy_office": series_stats(real.t, real.channels, _uci_workdays(real.t)),
              "simulated_offices": _merge(sim), "n_simulated_offices": len(sim)}
    house = appliances_house()
    bedroom_stats = []
    for name in ("parents room", "teenager room"):
        room = house[name]
        bedroom_stats.append({"room": name, **_bedroom_stats(room.t, room.channels)})
    report["appliances_bedrooms"] = bedroom_stats
    sim_bed = []
    for trace in bedrooms:
        t, channels = simulated_as_read(trace, 600.0)
        sim_bed.append(_bedroom_stats(t, {k: channels[k] for k in ("temperature", "humidity")}))
    report["simulated_bedrooms"] = _merge(sim_bed) if sim_bed else None
    lights = house["house lights"].channels["lights_wh"]
    report["appliances_house_lights_on_fraction"] = round(float((lights > 0).mean()), 3)
    return report


def _is_workday(trace, day: int) -> bool:
    # the building's weekday is not stored on the trace; an office with nobody all day is a weekend or holiday
    sel = (trace.t // DAY_S).astype(int) == day
    return bool(trace.occupancy[sel].max(initial=0) > 0)


def _bedroom_stats(t, channels) -> dict:
    day = (t // DAY_S).astype(int)
    swings = [np.nanmax(channels["temperature"][day == d]) - np.nanmin(channels["temperature"][day == d])
              for d in np.unique(day) if (day == d).sum() > 100]
    return {"temperature": ranges(channels["temperature"]), "humidity": ranges(channels["humidity"]),
            "daily_temperature_swing_c": round(float(np.median(swings)), 2) if swings else None}


def _merge(stats: list[dict]):
    """Medians over rooms of every number in the nested stats."""
    first = stats[0]
    if isinstance(first, dict):
        return {k: _merge([s[k] for s in stats]) for k in first}
    if isinstance(first, list):
        return [_merge([s[i] for s in stats]) for i in range(len(first))]
    if first is None:
        return None
    values = [v for v in stats if v is not None and np.isfinite(v)]
    return round(float(np.median(values)), 2) if values else None


def figure(path: str, report: dict, seed: int = 1) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.rooms.simulator import ROOM_USES

    offices, _ = simulated_offices(2, seed, days=3)
    traces = simulate_buildings(1, seed=seed, days=2)
    meeting = next(tr for tr in traces if tr.room.kind == "meeting room")
    real = uci_occupancy()
    fig, axes = plt.subplots(3, 2, figsize=(12, 9))
    day = (meeting.t >= DAY_S * 0) & (meeting.t < DAY_S * 2)
    ax = axes[0, 0]
    hours = meeting.t[day] / 3600
    ax.plot(hours, meeting.co2[day], label="CO2 true (ppm)")
    sel = meeting.readings_t < 2 * DAY_S
    ax.plot(meeting.readings_t[sel] / 3600, meeting.readings["co2"][sel], ".", ms=2, label="CO2 sensor")
    ax2 = ax.twinx()
    ax2.fill_between(hours, meeting.occupancy[day], step="post", alpha=0.25, color="C2", label="people")
    ax2.set_ylabel("people")
    ax.set_title(f"simulated meeting room ({meeting.room.volume_m3:.0f} m3, vent {meeting.room.vent_ach:.1f} ACH)")
    ax.set_xlabel("hour")
    ax.legend(loc="upper left", fontsize=7)
    ax = axes[0, 1]
    ax.plot(hours, meeting.light[day], label="light (lux)")
    ax.plot(hours, meeting.noise[day] * 10, alpha=0.4, label="noise (dB x10)")
    ax.plot(hours, meeting.pir[day].astype(float) * 200, alpha=0.6, label="PIR x200")
    ax.set_title("light, noise and PIR of the same room")
    ax.legend(fontsize=7)
    ax.set_xlabel("hour")
    ax = axes[1, 0]
    for tr in offices[:3]:
        sel = tr.t < 3 * DAY_S
        ax.plot(tr.t[sel] / 3600, tr.co2[sel], lw=0.8, alpha=0.8)
    ax.set_title("simulated offices, CO2 over 3 days")
    ax.set_xlabel("hour")
    ax = axes[1, 1]
    first = real.t[0] - real.t[0] % DAY_S
    ax.plot((real.t - first) / 3600, real.channels["co2"], label="CO2 (ppm)")
    ax.plot((real.t - first) / 3600, real.channels["light"], label="light (lux)", alpha=0.7)
    ax.set_title("real: UCI Occupancy office (river), 6 days")
    ax.legend(fontsize=7)
    ax.set_xlabel("hour since the first midnight")
    for col, key, unit in ((0, "daily_co2", "ppm"), (1, "daily_light", "lux")):
        ax = axes[2, col]
        ax.plot(report["uci_occupancy_office"][key], "o-", label="real office (workdays)")
        ax.plot(report["simulated_offices"][key], "s-", label="simulated offices (median)")
        ax.set_title(f"median {key.split('_')[1]} by hour, workdays ({unit})")
        ax.set_xlabel("hour of day")
        ax.legend(fontsize=7)
    fig.suptitle(f"Room simulator (uses: {', '.join(ROOM_USES)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = compare(seed=args.seed)
    if args.figure:
        figure(args.figure, report, args.seed)
    print(json.dumps(report, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
