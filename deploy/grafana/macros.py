"""What Grafana does to a panel's SQL before its PostgreSQL data source runs it.

Two steps, in Grafana's order: the dashboard substitutes template variables (`$room`, `${device}`,
`$__interval`), then the data source expands its macros (`$__timeFilter(col)`, `$__timeGroup(col, 5m)`,
...). The tests run every panel's SQL through this and then against the real database, and the
previews draw from the same SQL, so what they check is what Grafana would send.

Formatting follows Grafana's SQL data sources: the values of a multi-value variable become a
comma-separated list of single-quoted literals (`room_id IN ($room)`, pass a list); a variable's custom
"All" value, like a single-valued variable, is inserted as it is (pass a string). `$__timeGroup` uses `time_bucket` when the data source's `timescaledb` flag is set and plain
epoch arithmetic otherwise, as Grafana does.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

MACRO = re.compile(r"\$(__\w+)\(([^()]*)\)")
UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class MacroError(ValueError):
    """The SQL uses a macro wrongly (Grafana would answer the panel with an error too)."""


def parse_interval(text: str) -> float:
    """Seconds in a Grafana interval such as '30s', '5m', '1h' (quotes allowed)."""
    m = re.fullmatch(r"\s*'?(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)'?\s*", text)
    if not m:
        raise MacroError(f"not an interval: {text!r}")
    return float(m.group(1)) * UNITS_S[m.group(2)]


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def substitute_variables(sql: str, variables: dict[str, str | list[str]], interval: str) -> str:
    """Template variables as the dashboard fills them in; a list is a multi-value (or All) selection."""
    values = {"__interval": interval, "__interval_ms": str(int(parse_interval(interval) * 1000)),
              "__rate_interval": interval}
    for name, value in variables.items():
        if isinstance(value, str):
            values[name] = value
        elif not value:
            raise MacroError(f"variable ${name} has no value selected")
        else:
            values[name] = ",".join(quote(v) for v in value)
    # Longest names first, so $room never eats the start of $room_kind.
    for name in sorted(values, key=len, reverse=True):
        sql = re.sub(r"\$\{" + re.escape(name) + r"\}|\$" + re.escape(name) + r"\b",
                     lambda _m, v=values[name]: v, sql)
    return sql


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expand_macros(sql: str, time_from: datetime, time_to: datetime, timescaledb: bool) -> str:
    """The PostgreSQL data source's macros over the dashboard's time range."""

    def one(m: re.Match) -> str:
        name, args = m.group(1), [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
        if name in ("__time", "__timeEpoch", "__timeFilter") and not args:
            raise MacroError(f"${name} needs a time column")
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{_rfc3339(time_from)}' AND '{_rfc3339(time_to)}'"
        if name == "__timeFrom":
            return f"'{_rfc3339(time_from)}'"
        if name == "__timeTo":
            return f"'{_rfc3339(time_to)}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            if len(args) < 2:
                raise MacroError(f"${name} needs a time column and an interval")
            seconds = parse_interval(args[1])
            if seconds <= 0:
                raise MacroError(f"${name} interval must be positive, got {args[1]}")
            group = (f"time_bucket('{seconds:.3f}s',{args[0]})" if timescaledb
                     else f"floor(extract(epoch from {args[0]})/{seconds:g})*{seconds:g}")
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(time_from.timestamp())} AND {args[0]} <= {int(time_to.timestamp())}"
        raise MacroError(f"unknown macro ${name}")

    return MACRO.sub(one, sql)


def interpolate(sql: str, *, time_from: datetime, time_to: datetime, variables: dict[str, str | list[str]],
                timescaledb: bool, interval: str = "1m") -> str:
    """`sql` as Grafana would send it to PostgreSQL for this time range and these variable values."""
    return expand_macros(substitute_variables(sql, variables, interval), time_from, time_to, timescaledb)
