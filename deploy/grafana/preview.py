"""Pictures of the main room and fleet panels, drawn with matplotlib from the panels' own SQL.

The SQL goes through `macros.interpolate` exactly as the tests run it, with every template variable
on "All" (the dashboards' custom All value, which the panels read as "no filter").
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Engine, text

from deploy.grafana.dashboards import ALL, DashboardSpec, SqlPanel
from deploy.grafana.macros import interpolate

PREVIEWS = {
    "room.png": ("iotlm-room", ("Activity timeline per room", "Activity minutes per hour")),
    "fleet.png": ("iotlm-fleet", ("Windows stored per minute", "Streaming minutes per hour by device")),
}


def selection(spec: DashboardSpec, selected: dict[str, list[str]] | None = None) -> dict[str, str | list[str]]:
    """Variable values as Grafana sends them: `selected` ones as lists, every other on All."""
    return {v.name: ALL for v in spec.variables} | (selected or {})


def options(engine: Engine, spec: DashboardSpec, name: str, *, time_from: datetime, time_to: datetime,
            timescaledb: bool, selected: dict[str, list[str]] | None = None) -> list[str]:
    """What variable `name` offers when the others are as `selected` (default All)."""
    var = next(v for v in spec.variables if v.name == name)
    sql = interpolate(var.sql, time_from=time_from, time_to=time_to, variables=selection(spec, selected),
                      timescaledb=timescaledb)
    with engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(text(sql))]


def run_panel(engine: Engine, spec: DashboardSpec, panel: SqlPanel, *, time_from: datetime, time_to: datetime,
              timescaledb: bool, interval: str = "1m",
              selected: dict[str, list[str]] | None = None) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of one SQL panel as Grafana would fetch it (variables as in `selection`)."""
    sql = interpolate(panel.sql, time_from=time_from, time_to=time_to, variables=selection(spec, selected),
                      timescaledb=timescaledb, interval=interval)
    with engine.connect() as conn:
        result = conn.execute(text(sql))
        return list(result.keys()), [tuple(r) for r in result]


def as_datetime(value) -> datetime:
    """A `time` column: a timestamp, or epoch seconds (what $__timeGroup gives without TimescaleDB)."""
    return value if isinstance(value, datetime) else datetime.fromtimestamp(float(value), timezone.utc)


def _draw(ax, panel: SqlPanel, columns: list[str], rows: list[tuple], time_format: str) -> None:
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    ax.set_title(panel.title, loc="left", fontsize=11)
    ax.xaxis.set_major_formatter(mdates.DateFormatter(time_format))
    if panel.kind == "statetimeline":  # rows: time, lane, state
        lanes = sorted({r[1] for r in rows})
        states = sorted({r[2] for r in rows})
        colors = {s: f"C{i % 10}" for i, s in enumerate(states)}
        times = sorted({as_datetime(r[0]) for r in rows})
        step = (times[1] - times[0]) if len(times) > 1 else None
        for r in rows:
            start = mdates.date2num(as_datetime(r[0]))
            width = (mdates.date2num(as_datetime(r[0]) + step) - start) if step else 1 / 1440
            ax.broken_barh([(start, width)], (lanes.index(r[1]) - 0.4, 0.8), color=colors[r[2]])
        ax.set_yticks(range(len(lanes)), lanes)
        ax.legend(handles=[Patch(color=c, label=s) for s, c in colors.items()],
                  fontsize=7, ncol=min(len(states), 6), loc="upper right")
        ax.xaxis_date()
        return
    series: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    value_col = columns[-1]
    for r in rows:
        name = r[1] if "metric" in columns else value_col
        series[name].append((as_datetime(r[0]), float(r[-1])))
    if panel.kind == "bars":
        bottoms: dict[datetime, float] = defaultdict(float)
        for i, (name, points) in enumerate(sorted(series.items())):
            xs = [t for t, _ in points]
            ys = [v for _, v in points]
            # one bar per hourly bucket, drawn over the hour it counts
            ax.bar(xs, ys, width=1 / 24 * 0.95, align="edge", bottom=[bottoms[t] for t in xs], label=name,
                   color=f"C{i % 10}")
            for t, v in points:
                bottoms[t] += v
    else:
        for name, points in sorted(series.items()):
            ax.plot([t for t, _ in points], [v for _, v in points], label=name)
    ax.set_ylabel(panel.unit or value_col)
    ax.legend(fontsize=7, ncol=4, loc="upper right")


def render(engine: Engine, specs: list[DashboardSpec], out_dir: Path, *, time_from: datetime, time_to: datetime,
           timescaledb: bool, interval: str = "1m") -> list[Path]:
    """Write PREVIEWS under out_dir; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_uid = {s.uid: s for s in specs}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, (uid, titles) in PREVIEWS.items():
        spec = by_uid[uid]
        panels = [p for p in spec.sql_panels if p.title in titles]
        fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 * len(panels)), squeeze=False)
        for ax, panel in zip(axes[:, 0], panels):
            columns, rows = run_panel(engine, spec, panel, time_from=time_from, time_to=time_to,
                                      timescaledb=timescaledb, interval=interval)
            _draw(ax, panel, columns, rows, "%H:%M" if time_to - time_from > timedelta(hours=2) else "%H:%M:%S")
        fig.suptitle(f"{spec.title}  ({time_from:%Y-%m-%d %H:%M} - {time_to:%H:%M} UTC)", fontsize=12)
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
