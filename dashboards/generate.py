#!/usr/bin/env python3
"""The one source of Lasect's Grafana dashboards: writes dashboards/json/*.json.

    python3 dashboards/generate.py          # (re)write the JSON files
    python3 dashboards/generate.py --check  # exit 1 if a committed file differs

Standard library only. Every panel reads the store through the provisioned
PostgreSQL datasource (uid `lasect-store`) with plain SQL that runs on both store
layouts: buckets are `date_bin` (PostgreSQL 14+, on native partitions and on
TimescaleDB hypertables alike), aligned on the epoch like the API's series.

How values are read (the families' semantics, see migrations/sql and
api/src/routes/series_spec.rs):
- cumulative counters (database, table, index, wal, bgwriter, archiver,
  host_network/host_disk_io counters): per sample, the increase over the
  previous sample of the same series; a counter that went down was reset and
  its new value is the increase (never a negative spike); a rate is the sum of
  increases over the sum of the seconds between the samples, per series, then
  summed over the series a line shows;
- per-interval deltas the agent computed (statement, wait, log_drops): summed;
- gauges (sizes, sessions, lags, percentages): averaged per bucket (ages: max).
"""

import json
import pathlib
import sys

DS = {"type": "grafana-postgresql-datasource", "uid": "lasect-store"}
SCHEMA_VERSION = 39
OUT = pathlib.Path(__file__).resolve().parent / "json"

# Bucket start of a row: the dashboard's interval, aligned on the epoch.
def bucket(col):
    return f"date_bin(make_interval(secs => $__interval_ms / 1000.0), {col}, 'epoch')"

INSTANCES = "m.instance_id IN ($instance)"
AGENTS = "m.agent_id IN (SELECT agent_id FROM instances WHERE id IN ($instance))"
DATABASES = " AND m.datname IN ($database)"
# Rows read before the range: the previous sample of the range's first one.
LOOKBACK = ("m.time > $__timeFrom()::timestamptz - interval '15 minutes' "
            "AND m.time <= $__timeTo()::timestamptz")
SECONDS = "($__interval_ms / 1000.0)"
ONE_LINE = "regexp_replace({}, '[[:space:]]+', ' ', 'g')"


def delta(col):
    """Increase of a cumulative counter since the series' previous sample (reset-safe)."""
    return (f"CASE WHEN m.{col} >= lag(m.{col}) OVER w THEN m.{col} - lag(m.{col}) OVER w "
            f"ELSE m.{col} END")


def owner(agent):
    """A table's id column, the filter by the selected instances, and the join naming them."""
    if agent:
        return "m.agent_id", AGENTS, ""
    return "m.instance_id", INSTANCES, "JOIN instances i ON i.id = m.instance_id"


def rate(table, keys, label, counters, where="", agent=False, outer=None, top=None):
    """Per-second rates of cumulative counters, one line per `label`.

    counters: [(alias, column)]; outer: [(alias, expression over r0, r1, ...)]
    computed from the rates summed per line (default: each rate under its alias);
    top: keep the `top` lines with the largest first value over the range.
    """
    own, filt, join = owner(agent)
    part = ", ".join([own] + [f"m.{k}" for k in keys])
    deltas = ",\n         ".join(f"{delta(c)} AS d{n}" for n, (_, c) in enumerate(counters))
    rates = ", ".join(f"sum(d{n}) / nullif(sum(dt), 0) AS r{n}"
                      for n in range(len(counters)))
    summed = ", ".join(f"sum(r{n}) AS r{n}" for n in range(len(counters)))
    if outer is None:
        outer = [(alias, f"r{n}") for n, (alias, _) in enumerate(counters)]
    cols = ", ".join(f'{expr} AS "{alias}"' for alias, expr in outer)
    keep = ""
    if top:
        keep = (f"WHERE metric IN (SELECT metric FROM l GROUP BY metric "
                f"ORDER BY sum(r0) DESC NULLS LAST LIMIT {top})\n")
    return f"""WITH d AS (
  SELECT m.time, {label} AS metric, concat_ws('/', {part}) AS series,
         {deltas},
         extract(epoch FROM m.time - lag(m.time) OVER w) AS dt
  FROM {table} m {join}
  WHERE {filt}{where} AND {LOOKBACK}
  WINDOW w AS (PARTITION BY {part} ORDER BY m.time)
), r AS (
  SELECT {bucket('time')} AS time, metric, series, {rates}
  FROM d WHERE $__timeFilter(time) AND dt > 0
  GROUP BY 1, 2, 3
), l AS (
  SELECT time, metric, {summed} FROM r GROUP BY 1, 2
)
SELECT time, metric, {cols}
FROM l
{keep}ORDER BY 1, 2"""


def gauge(table, keys, label, values, where="", agent=False, agg="avg", combine="sum",
          time_filter=None):
    """Gauges per bucket: `agg` per series (keys), then `combine` over a line's series.

    values: [(alias, column expression)].
    """
    own, filt, join = owner(agent)
    part = ", ".join([own] + [f"m.{k}" for k in keys])
    inner = ", ".join(f"{agg}({expr}) AS g{n}" for n, (_, expr) in enumerate(values))
    cols = ", ".join(f'{combine}(g{n}) AS "{alias}"' for n, (alias, _) in enumerate(values))
    tf = time_filter or "$__timeFilter(m.time)"
    return f"""WITH g AS (
  SELECT {bucket('m.time')} AS time, {label} AS metric, concat_ws('/', {part}) AS series, {inner}
  FROM {table} m {join}
  WHERE {filt}{where} AND {tf}
  GROUP BY 1, 2, 3
)
SELECT time, metric, {cols}
FROM g GROUP BY 1, 2 ORDER BY 1, 2"""


def increase(table, keys, counters, where=""):
    """CTE `inc`: per series of an instance's table, the increase of each counter over the
    range (reset-safe), with the series' latest row as `m.*` columns `keys`."""
    part = ", ".join(["m.instance_id"] + [f"m.{k}" for k in keys])
    deltas = ", ".join(f"{delta(c)} AS d_{c}" for c in counters)
    sums = ", ".join(f"sum(d_{c}) AS {c}" for c in counters)
    key_cols = ", ".join(keys)
    return f"""inc AS (
  SELECT instance_id, {key_cols}, {sums}
  FROM (SELECT m.time, m.instance_id, {', '.join('m.' + k for k in keys)}, {deltas},
               lag(m.time) OVER w AS prev
        FROM {table} m
        WHERE {INSTANCES}{where} AND {LOOKBACK}
        WINDOW w AS (PARTITION BY {part} ORDER BY m.time)) x
  WHERE prev IS NOT NULL AND $__timeFilter(time)
  GROUP BY instance_id, {key_cols}
)"""


def latest(table, keys, cols, where="", agent=False):
    """The newest row in the range of every series (`keys`) of the selected instances."""
    own, filt, join = owner(agent)
    part = ", ".join([own] + [f"m.{k}" for k in keys])
    return f"""SELECT DISTINCT ON ({part}) {cols}
FROM {table} m {join}
WHERE {filt}{where} AND $__timeFilter(m.time)
ORDER BY {part}, m.time DESC"""


# ---------------------------------------------------------------- panels

class Panel:
    def __init__(self, kind, title, sql, w=12, h=8, unit=None, fmt=None, description="",
                 options=None, field=None, overrides=None):
        self.kind, self.title, self.sql, self.w, self.h = kind, title, sql, w, h
        self.unit, self.description = unit, description
        self.fmt = fmt or ("time_series" if kind == "timeseries" else "table")
        self.options, self.field, self.overrides = options, field, overrides


def ts(title, sql, unit="short", w=12, h=8, description="", stack=False, field=None):
    custom = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
        custom["fillOpacity"] = 40
    f = {"custom": custom}
    f.update(field or {})
    return Panel("timeseries", title, sql, w, h, unit, description=description,
                 options={"legend": {"displayMode": "table", "placement": "bottom",
                                     "calcs": ["mean", "max", "lastNotNull"]},
                          "tooltip": {"mode": "multi", "sort": "desc"}},
                 field=f)


def table(title, sql, w=24, h=9, unit=None, description="", overrides=None):
    return Panel("table", title, sql, w, h, unit, description=description,
                 options={"showHeader": True, "cellHeight": "sm",
                          "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
                 overrides=overrides)


def stat(title, sql, unit="short", w=6, h=4, description="", thresholds=None):
    field = {}
    if thresholds:
        field["thresholds"] = {"mode": "absolute", "steps": thresholds}
    return Panel("stat", title, sql, w, h, unit, description=description,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False},
                          "colorMode": "value", "graphMode": "none", "textMode": "auto",
                          "justifyMode": "auto", "orientation": "auto"},
                 field=field)


def unit_override(column, unit):
    return {"matcher": {"id": "byName", "options": column},
            "properties": [{"id": "unit", "value": unit}]}


def row(title):
    return Panel("row", title, None, w=24, h=1)


# ---------------------------------------------------------------- variables

def variable(name, label, sql, multi=True, include_all=True, current=None, refresh=2):
    v = {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": sql, "definition": sql, "refresh": refresh, "multi": multi,
        "includeAll": include_all, "sort": 0, "hide": 0, "regex": "", "options": [],
    }
    if current is not None:
        v["current"] = current
    elif include_all:
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        v["current"] = {}
    return v


LABEL_VAR = variable(
    "label", "Labels",
    "SELECT '*' UNION SELECT DISTINCT l.key || '=' || l.value "
    "FROM instances i, jsonb_each_text(i.labels) AS l WHERE i.state <> 'removed' ORDER BY 1",
    include_all=False, refresh=1,
    current={"selected": True, "text": ["*"], "value": ["*"]})

INSTANCE_VAR = variable(
    "instance", "Instance",
    "SELECT i.name || CASE WHEN count(*) OVER (PARTITION BY i.name) > 1 "
    "THEN ' (' || i.agent_id || ')' ELSE '' END AS __text, i.id::text AS __value "
    "FROM instances i WHERE i.state <> 'removed' AND ('*' IN ($label) OR EXISTS "
    "(SELECT 1 FROM jsonb_each_text(i.labels) AS l WHERE l.key || '=' || l.value IN ($label))) "
    "ORDER BY 1", refresh=1)

DATABASE_VAR = variable(
    "database", "Database",
    "SELECT DISTINCT datname FROM metric_database "
    "WHERE instance_id IN ($instance) AND $__timeFilter(time) ORDER BY 1")

QUERYID_VAR = variable(
    "queryid", "Statement",
    "SELECT left(" + ONE_LINE.format("coalesce(t.query, '?')") + ", 80) || ' [' || s.queryid || ']' "
    "AS __text, s.queryid::text AS __value FROM (SELECT instance_id, queryid, "
    "sum(total_exec_time_ms) AS ms FROM metric_statement WHERE instance_id IN ($instance) "
    "AND $__timeFilter(time) GROUP BY 1, 2 ORDER BY 3 DESC NULLS LAST LIMIT 50) s "
    "LEFT JOIN statement_texts t ON t.instance_id = s.instance_id AND t.queryid = s.queryid "
    "ORDER BY s.ms DESC NULLS LAST",
    multi=False, include_all=False)

COMMON = [LABEL_VAR, INSTANCE_VAR]
WITH_DB = [LABEL_VAR, INSTANCE_VAR, DATABASE_VAR]

# ---------------------------------------------------------------- dashboards

STMT_DBS = (" AND m.dbid IN (SELECT DISTINCT datid FROM metric_database WHERE instance_id IN "
            "($instance) AND datname IN ($database) AND $__timeFilter(time))")


def top_statements(order, title, description):
    return table(title, f"""WITH s AS (
  SELECT m.instance_id, m.queryid, sum(m.calls) AS calls, sum(m.total_exec_time_ms) AS total_ms,
         sum(m.rows) AS rows, sum(m.shared_blks_hit) AS hit, sum(m.shared_blks_read) AS read,
         sum(m.temp_blks_read + m.temp_blks_written) AS temp,
         sum(m.shared_blk_read_time_ms + m.shared_blk_write_time_ms) AS io_ms,
         sum(m.wal_bytes) AS wal, bool_or(m.since_reset) AS since_reset
  FROM metric_statement m
  WHERE {INSTANCES}{STMT_DBS} AND $__timeFilter(m.time)
  GROUP BY 1, 2
)
SELECT i.name AS "instance", s.queryid::text AS "queryid", s.calls AS "calls",
       s.total_ms AS "total time", s.total_ms / nullif(s.calls, 0) AS "mean time",
       s.rows AS "rows", s.read AS "blocks read", s.hit AS "blocks hit",
       100.0 * s.hit / nullif(s.hit + s.read, 0) AS "hit %", s.temp AS "temp blocks",
       s.io_ms AS "I/O time", s.wal AS "WAL", s.since_reset AS "reset in range",
       left({ONE_LINE.format("t.query")}, 200) AS "query"
FROM s JOIN instances i ON i.id = s.instance_id
LEFT JOIN statement_texts t ON t.instance_id = s.instance_id AND t.queryid = s.queryid
ORDER BY {order} DESC NULLS LAST
LIMIT 25""", h=10, description=description,
                 overrides=[unit_override("total time", "ms"), unit_override("mean time", "ms"),
                            unit_override("I/O time", "ms"), unit_override("WAL", "bytes"),
                            unit_override("hit %", "percent")])


ONE_STMT = f"{INSTANCES} AND m.queryid = nullif('$queryid', '')::bigint"


def fleet():
    return "lasect-fleet", "Fleet overview", COMMON, [
        stat("Instances", "SELECT count(*) AS instances FROM instances WHERE id IN ($instance)"),
        stat("Not seen for 5 minutes",
             "SELECT count(*) AS silent FROM instances "
             "WHERE id IN ($instance) AND (last_seen IS NULL OR last_seen < now() - interval '5 minutes')",
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        stat("Sessions", f"""SELECT sum(a.total_sessions) AS sessions FROM (
  {latest('metric_activity', [], 'm.total_sessions')}) a""".replace("\n  ", "\n  ")),
        stat("Errors in range (ERROR and worse)",
             "SELECT count(*) AS errors FROM metric_log m "
             f"WHERE {INSTANCES} AND $__timeFilter(m.time) "
             "AND m.severity IN ('ERROR', 'FATAL', 'PANIC')",
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        table("Instances", f"""WITH a AS ({latest('metric_activity', [],
                                        'm.instance_id, m.total_sessions, m.connection_use_percent, m.oldest_xact_age_seconds')}),
s AS (SELECT d.instance_id, sum(d.size_bytes) AS size_bytes FROM ({latest('metric_database', ['datid'],
                                        'm.instance_id, m.size_bytes')}) d GROUP BY 1)
SELECT i.name AS "instance", i.agent_id AS "agent", i.version AS "version",
       CASE WHEN i.in_recovery THEN 'standby' ELSE 'primary' END AS "role",
       i.labels::text AS "labels", extract(epoch FROM now() - i.last_seen) AS "last seen",
       a.total_sessions AS "sessions", a.connection_use_percent AS "connections used",
       a.oldest_xact_age_seconds AS "oldest transaction", s.size_bytes AS "databases size"
FROM instances i
LEFT JOIN a ON a.instance_id = i.id
LEFT JOIN s ON s.instance_id = i.id
WHERE i.id IN ($instance)
ORDER BY i.name""", description="The newest sample of each instance in the range.",
              overrides=[unit_override("last seen", "s"), unit_override("connections used", "percent"),
                         unit_override("oldest transaction", "s"),
                         unit_override("databases size", "bytes")]),
        ts("Transactions per second", rate("metric_database", ["datid"], "i.name",
                                           [("commits", "xact_commit"), ("rollbacks", "xact_rollback")],
                                           outer=[("tps", "r0 + r1")]), unit="ops"),
        ts("Connections used", gauge("metric_activity", [], "i.name",
                                     [("used", "m.connection_use_percent")]), unit="percent"),
        ts("Databases size", gauge("metric_database", ["datid"], "i.name",
                                   [("size", "m.size_bytes")]), unit="bytes"),
        ts("Errors per minute", f"""SELECT {bucket('m.time')} AS time, i.name AS metric,
       count(*) * 60.0 / {SECONDS} AS "errors"
FROM metric_log m JOIN instances i ON i.id = m.instance_id
WHERE {INSTANCES} AND $__timeFilter(m.time) AND m.severity IN ('ERROR', 'FATAL', 'PANIC')
GROUP BY 1, 2 ORDER BY 1, 2""", unit="short"),
    ]


# The default pack's wraparound thresholds (migration V27, docs/ALERTS.md): 2^30 warns,
# 1.5e9 is critical; both counters wrap at 2^31.
WRAPAROUND_STEPS = [{"color": "green", "value": None}, {"color": "orange", "value": 1073741824},
                    {"color": "red", "value": 1500000000}]


def wraparound():
    p = ts("Transaction id and multixact wraparound age",
           gauge("metric_database", ["datid"], "i.name || ' ' || m.datname",
                 [("xid age", "m.datfrozenxid_age"), ("multixact age", "m.datminmxid_age")],
                 where=DATABASES, agg="max", combine="max"),
           description="age(datfrozenxid) and mxid_age(datminmxid) per database: how many "
                       "transaction ids and multixacts old its oldest unfrozen row may be. "
                       "Autovacuum freezes from autovacuum_freeze_max_age (200 million by default) "
                       "on; writes stop shortly before 2^31 (2.1 billion). Lines: the default "
                       "alerts' warning (2^30) and critical (1.5 billion) levels.")
    p.field["custom"]["thresholdsStyle"] = {"mode": "line"}
    p.field["thresholds"] = {"mode": "absolute", "steps": WRAPAROUND_STEPS}
    return p


def instance():
    return "lasect-instance", "Instance overview", WITH_DB, [
        ts("Transactions per second", rate("metric_database", ["datid"], "i.name || ' ' || m.datname",
                                           [("commits", "xact_commit"), ("rollbacks", "xact_rollback")],
                                           where=DATABASES), unit="ops"),
        ts("Cache hit ratio", rate("metric_database", ["datid"], "i.name || ' ' || m.datname",
                                   [("hit", "blks_hit"), ("read", "blks_read")], where=DATABASES,
                                   outer=[("hit %", "100 * r0 / nullif(r0 + r1, 0)")]),
           unit="percent", description="Share of block reads served from shared buffers."),
        ts("Sessions by state", gauge("metric_activity_sessions", ["datname", "usename", "application_name", "state"],
                                      "i.name || ' ' || coalesce(m.state, 'background')",
                                      [("sessions", "m.sessions")],
                                      where=" AND (m.datname IS NULL OR m.datname IN ($database))"),
           stack=True),
        ts("Connections used", gauge("metric_activity", [], "i.name",
                                     [("used", "m.connection_use_percent")]), unit="percent"),
        ts("Oldest transaction, query and idle-in-transaction",
           gauge("metric_activity", [], "i.name",
                 [("transaction", "m.oldest_xact_age_seconds"), ("query", "m.oldest_query_age_seconds"),
                  ("idle in transaction", "m.oldest_idle_in_xact_age_seconds")], agg="max", combine="max"),
           unit="s"),
        ts("Rows per second", rate("metric_database", ["datid"], "i.name || ' ' || m.datname",
                                   [("returned", "tup_returned"), ("fetched", "tup_fetched"),
                                    ("inserted", "tup_inserted"), ("updated", "tup_updated"),
                                    ("deleted", "tup_deleted")], where=DATABASES), unit="rps"),
        ts("Temporary files and deadlocks", rate("metric_database", ["datid"], "i.name || ' ' || m.datname",
                                                 [("temp bytes/s", "temp_bytes"), ("deadlocks/s", "deadlocks"),
                                                  ("conflicts/s", "conflicts")], where=DATABASES)),
        ts("Database size", gauge("metric_database", ["datid"], "i.name || ' ' || m.datname",
                                  [("size", "m.size_bytes")], where=DATABASES), unit="bytes"),
        wraparound(),
        ts("Custom metrics", gauge("metric_custom", ["metric", "datname", "labels", "value_name"],
                                   "i.name || ' ' || m.metric || '.' || m.value_name || "
                                   "CASE WHEN m.labels = '{}' THEN '' ELSE ' ' || m.labels::text END",
                                   [("value", "m.value")]), w=24,
           description="The instance's user-defined SQL metrics ([[collect.custom]] in agent.toml)."),
        table("Running maintenance (progress)", latest(
            "metric_progress", ["command", "pid"],
            'i.name AS "instance", m.command AS "command", m.pid AS "pid", m.datname AS "database", '
            'm.relid AS "relid", m.phase AS "phase", m.percent_done AS "done %", m.time AS "seen"',
            where=" AND m.time > $__timeTo()::timestamptz - interval '5 minutes'"),
              h=6, description="VACUUM, ANALYZE, CREATE INDEX, CLUSTER, base backups and COPY "
                               "seen in the last five minutes of the range.",
              overrides=[unit_override("done %", "percent")]),
    ]


def statements():
    return "lasect-statements", "Statements", WITH_DB + [QUERYID_VAR], [
        row("Top statements in the range"),
        top_statements("s.total_ms", "Top by total time",
                       "pg_stat_statements deltas summed over the range."),
        top_statements("s.calls", "Top by calls", "Most executed statements."),
        top_statements("s.total_ms / nullif(s.calls, 0)", "Top by mean time",
                       "Slowest statements per call."),
        top_statements("s.read + s.temp", "Top by I/O",
                       "Shared blocks read from outside shared buffers plus temporary blocks."),
        ts("Execution time by statement (top 10)", f"""WITH t AS (
  SELECT {bucket('m.time')} AS time, i.name || ' ' || m.queryid AS metric,
         sum(m.total_exec_time_ms) / {SECONDS} AS load
  FROM metric_statement m JOIN instances i ON i.id = m.instance_id
  WHERE {INSTANCES}{STMT_DBS} AND $__timeFilter(m.time)
  GROUP BY 1, 2
)
SELECT time, metric, load AS "ms/s" FROM t
WHERE metric IN (SELECT metric FROM t GROUP BY 1 ORDER BY sum(load) DESC LIMIT 10)
ORDER BY 1, 2""", unit="ms", w=24,
           description="Milliseconds of execution per second of wall time: 1000 = one busy backend."),
        row("One statement ($queryid)"),
        ts("Calls and rows per second", f"""SELECT {bucket('m.time')} AS time, i.name AS metric,
       sum(m.calls) / {SECONDS} AS "calls", sum(m.rows) / {SECONDS} AS "rows"
FROM metric_statement m JOIN instances i ON i.id = m.instance_id
WHERE {ONE_STMT} AND $__timeFilter(m.time)
GROUP BY 1, 2 ORDER BY 1, 2""", unit="ops", w=8),
        ts("Mean execution and planning time", f"""SELECT {bucket('m.time')} AS time, i.name AS metric,
       sum(m.total_exec_time_ms) / nullif(sum(m.calls), 0) AS "execution",
       sum(m.total_plan_time_ms) / nullif(sum(m.plans), 0) AS "planning"
FROM metric_statement m JOIN instances i ON i.id = m.instance_id
WHERE {ONE_STMT} AND $__timeFilter(m.time)
GROUP BY 1, 2 ORDER BY 1, 2""", unit="ms", w=8),
        ts("Blocks per second", f"""SELECT {bucket('m.time')} AS time, i.name AS metric,
       sum(m.shared_blks_hit) / {SECONDS} AS "hit", sum(m.shared_blks_read) / {SECONDS} AS "read",
       sum(m.shared_blks_dirtied) / {SECONDS} AS "dirtied",
       sum(m.temp_blks_read + m.temp_blks_written) / {SECONDS} AS "temp"
FROM metric_statement m JOIN instances i ON i.id = m.instance_id
WHERE {ONE_STMT} AND $__timeFilter(m.time)
GROUP BY 1, 2 ORDER BY 1, 2""", w=8),
        table("Statement text", f"""SELECT i.name AS "instance", t.queryid::text AS "queryid",
       t.first_seen AS "first seen", t.query AS "query"
FROM statement_texts t JOIN instances i ON i.id = t.instance_id
WHERE t.instance_id IN ($instance) AND t.queryid = nullif('$queryid', '')::bigint""", h=6),
    ]


def waits():
    aas = (f"sum(m.count) / {SECONDS}")
    return "lasect-waits", "Waits", COMMON, [
        ts("Average sessions waiting, by event type", f"""SELECT {bucket('m.time')} AS time,
       m.wait_event_type AS metric, {aas} AS "sessions"
FROM metric_wait m
WHERE {INSTANCES} AND $__timeFilter(m.time)
GROUP BY 1, 2 ORDER BY 1, 2""", stack=True, w=12,
           description="Active sessions seen waiting, sampled every second: the sum of the "
                       "samples over the bucket's seconds."),
        ts("Average sessions waiting, by event (top 10)", f"""WITH t AS (
  SELECT {bucket('m.time')} AS time, m.wait_event_type || ':' || m.wait_event AS metric,
         {aas} AS sessions
  FROM metric_wait m
  WHERE {INSTANCES} AND $__timeFilter(m.time)
  GROUP BY 1, 2
)
SELECT time, metric, sessions AS "sessions" FROM t
WHERE metric IN (SELECT metric FROM t GROUP BY 1 ORDER BY sum(sessions) DESC LIMIT 10)
ORDER BY 1, 2""", stack=True, w=12),
        table("Wait events in the range", f"""SELECT i.name AS "instance", m.wait_event_type AS "type",
       m.wait_event AS "event", sum(m.count) AS "session-seconds",
       sum(m.count) / nullif(extract(epoch FROM $__timeTo()::timestamptz - $__timeFrom()::timestamptz), 0)
         AS "average sessions"
FROM metric_wait m JOIN instances i ON i.id = m.instance_id
WHERE {INSTANCES} AND $__timeFilter(m.time)
GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 50""", w=12),
        table("Waits by statement", f"""SELECT i.name AS "instance", coalesce(m.queryid::text, 'none') AS "queryid",
       string_agg(DISTINCT m.wait_event_type || ':' || m.wait_event, ', ') AS "events",
       sum(m.count) AS "session-seconds",
       left({ONE_LINE.format("min(t.query)")}, 200) AS "query"
FROM metric_wait m JOIN instances i ON i.id = m.instance_id
LEFT JOIN statement_texts t ON t.instance_id = m.instance_id AND t.queryid = m.queryid
WHERE {INSTANCES} AND $__timeFilter(m.time)
GROUP BY 1, 2 ORDER BY 4 DESC LIMIT 50""", w=12,
              description="Samples whose session ran a statement with a query id (compute_query_id)."),
    ]


def locks():
    return "lasect-locks", "Locks and blocking", COMMON, [
        ts("Sessions waiting for a lock", gauge("metric_activity", [], "i.name",
                                                [("waiting", "m.waiting_sessions")], agg="max")),
        ts("Locks by mode", gauge("metric_lock", ["locktype", "mode", "granted"],
                                  "i.name || ' ' || m.mode || CASE WHEN m.granted THEN '' ELSE ' (waiting)' END",
                                  [("locks", "m.count")]), stack=True),
        ts("Longest lock wait", gauge("metric_lock_waits", ["datname"], "i.name",
                                      [("wait", "m.wait_seconds")], agg="max", combine="max"),
           unit="s"),
        ts("Ungranted locks", gauge("metric_lock", ["locktype", "mode", "granted"],
                                    "i.name || ' ' || m.locktype || ' ' || m.mode",
                                    [("waiting", "m.count")], where=" AND NOT m.granted")),
        table("Blocking chains in the range", f"""SELECT i.name AS "instance", m.datname AS "database",
       m.blocked_pid AS "blocked pid", m.blocking_pid AS "blocking pid",
       max(m.wait_seconds) AS "longest wait", min(m.time) AS "first seen", max(m.time) AS "last seen",
       left({ONE_LINE.format("min(m.blocked_query)")}, 200) AS "blocked query",
       left({ONE_LINE.format("min(m.blocking_query)")}, 200) AS "blocking query"
FROM metric_lock_waits m JOIN instances i ON i.id = m.instance_id
WHERE {INSTANCES} AND $__timeFilter(m.time)
GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC NULLS LAST LIMIT 100""",
              overrides=[unit_override("longest wait", "s")]),
    ]


def tables():
    newest = latest("metric_table", ["datname", "relid"],
                    "m.instance_id, m.datname, m.schemaname, m.relname, m.heap_bytes, m.toast_bytes, "
                    "m.indexes_bytes, m.n_live_tup, m.n_dead_tup, m.dead_tuple_ratio, m.last_vacuum, "
                    "m.last_autovacuum, m.last_analyze, m.last_autoanalyze, m.n_mod_since_analyze",
                    where=DATABASES)
    return "lasect-tables", "Tables and indexes", WITH_DB, [
        table("Largest tables", f"""SELECT i.name AS "instance", t.datname AS "database",
       t.schemaname || '.' || t.relname AS "table",
       t.heap_bytes + coalesce(t.toast_bytes, 0) + coalesce(t.indexes_bytes, 0) AS "total",
       t.heap_bytes AS "heap", t.toast_bytes AS "toast", t.indexes_bytes AS "indexes",
       t.n_live_tup AS "live rows", t.n_dead_tup AS "dead rows",
       (t.heap_bytes * t.n_dead_tup / nullif(t.n_live_tup + t.n_dead_tup, 0))::int8 AS "bloat estimate"
FROM ({newest}) t JOIN instances i ON i.id = t.instance_id
ORDER BY 4 DESC NULLS LAST LIMIT 30""", w=24,
              description="Bloat estimate: the dead rows' share of the heap (from the statistics "
                          "collector, not pgstattuple).",
              overrides=[unit_override(c, "bytes") for c in
                         ("total", "heap", "toast", "indexes", "bloat estimate")]),
        table("Most dead rows", f"""SELECT i.name AS "instance", t.datname AS "database",
       t.schemaname || '.' || t.relname AS "table", t.n_dead_tup AS "dead rows",
       100 * t.dead_tuple_ratio AS "dead %",
       extract(epoch FROM now() - greatest(t.last_vacuum, t.last_autovacuum)) AS "since vacuum"
FROM ({newest}) t JOIN instances i ON i.id = t.instance_id
WHERE t.n_dead_tup > 0
ORDER BY 4 DESC LIMIT 30""", w=12,
              overrides=[unit_override("dead %", "percent"), unit_override("since vacuum", "s")]),
        table("Vacuum and analyze age", f"""SELECT i.name AS "instance", t.datname AS "database",
       t.schemaname || '.' || t.relname AS "table",
       extract(epoch FROM now() - greatest(t.last_vacuum, t.last_autovacuum)) AS "since vacuum",
       extract(epoch FROM now() - greatest(t.last_analyze, t.last_autoanalyze)) AS "since analyze",
       t.n_mod_since_analyze AS "changed since analyze"
FROM ({newest}) t JOIN instances i ON i.id = t.instance_id
ORDER BY 4 DESC NULLS FIRST LIMIT 30""", w=12,
              description="Tables never vacuumed come first (empty age).",
              overrides=[unit_override("since vacuum", "s"), unit_override("since analyze", "s")]),
        ts("Sequential scans per second (top 10 tables)",
           rate("metric_table", ["datname", "relid"],
                "i.name || ' ' || m.datname || ' ' || m.schemaname || '.' || m.relname",
                [("seq scans", "seq_scan")], where=DATABASES, top=10), unit="ops"),
        ts("Rows read by sequential scans per second (top 10 tables)",
           rate("metric_table", ["datname", "relid"],
                "i.name || ' ' || m.datname || ' ' || m.schemaname || '.' || m.relname",
                [("rows", "seq_tup_read")], where=DATABASES, top=10), unit="rps"),
        table("Sequential scans in the range", f"""WITH {increase('metric_table', ['datname', 'relid', 'schemaname', 'relname'],
                                                   ['seq_scan', 'seq_tup_read', 'idx_scan'], where=DATABASES)}
SELECT i.name AS "instance", inc.datname AS "database", inc.schemaname || '.' || inc.relname AS "table",
       inc.seq_scan AS "seq scans", inc.seq_tup_read AS "rows read", inc.idx_scan AS "index scans"
FROM inc JOIN instances i ON i.id = inc.instance_id
WHERE inc.seq_scan > 0
ORDER BY 5 DESC NULLS LAST LIMIT 30""", w=12),
        ts("Dead rows (top 10 tables)", f"""WITH g AS ({gauge('metric_table', ['datname', 'relid'],
            "i.name || ' ' || m.datname || ' ' || m.schemaname || '.' || m.relname",
            [('dead rows', 'm.n_dead_tup')], where=DATABASES)})
SELECT * FROM g WHERE metric IN (SELECT metric FROM g GROUP BY 1 ORDER BY max("dead rows") DESC NULLS LAST LIMIT 10)
ORDER BY 1, 2""", w=12),
        table("Unused indexes", f"""SELECT i.name AS "instance", x.datname AS "database",
       x.schemaname || '.' || x.relname AS "table", x.indexrelname AS "index",
       x.size_bytes AS "size", x.idx_scan AS "scans", x.last_idx_scan AS "last scan"
FROM ({latest('metric_index', ['datname', 'indexrelid'],
              'm.instance_id, m.datname, m.schemaname, m.relname, m.indexrelname, m.size_bytes, '
              'm.idx_scan, m.last_idx_scan, m.unused', where=DATABASES)}) x
JOIN instances i ON i.id = x.instance_id
WHERE x.unused
ORDER BY 5 DESC NULLS LAST LIMIT 50""", w=12,
              description="Never scanned since statistics were reset, and backing no constraint.",
              overrides=[unit_override("size", "bytes")]),
        ts("Index scans per second (top 10 indexes)",
           rate("metric_index", ["datname", "indexrelid"],
                "i.name || ' ' || m.datname || ' ' || m.indexrelname",
                [("scans", "idx_scan")], where=DATABASES, top=10), unit="ops", w=24),
    ]


def replication():
    return "lasect-replication", "Replication and slots", COMMON, [
        ts("Replica lag (bytes)", gauge("metric_replication", ["application_name", "client_addr"],
                                        "i.name || ' → ' || coalesce(m.application_name, '?') || ' ' || coalesce(m.client_addr, 'local')",
                                        [("replay", "m.replay_lag_bytes"), ("flush", "m.flush_lag_bytes")]),
           unit="bytes", description="Per WAL sender on the primary."),
        ts("Replica lag (time)", gauge("metric_replication", ["application_name", "client_addr"],
                                       "i.name || ' → ' || coalesce(m.application_name, '?') || ' ' || coalesce(m.client_addr, 'local')",
                                       [("replay", "m.replay_lag_seconds"), ("write", "m.write_lag_seconds")]),
           unit="s"),
        ts("WAL retained by slots", gauge("metric_replication_slot", ["slot_name"],
                                          "i.name || ' ' || m.slot_name",
                                          [("retained", "m.retained_bytes")]), unit="bytes"),
        ts("Standby replay delay", gauge("metric_standby", [], "i.name",
                                         [("replay delay", "m.replay_delay_seconds"),
                                          ("since last message", "m.last_msg_age_seconds")],
                                         agg="max", combine="max"),
           unit="s", description="On standbys: how far replay is behind the primary."),
        table("Replication slots", latest(
            "metric_replication_slot", ["slot_name"],
            'i.name AS "instance", m.slot_name AS "slot", m.slot_type AS "type", m.plugin AS "plugin", '
            'm.datname AS "database", m.active AS "active", m.temporary AS "temporary", '
            'm.retained_bytes AS "retained", m.wal_status AS "WAL status", '
            'm.safe_wal_size AS "safe WAL size", m.conflicting AS "conflicting"'),
              overrides=[unit_override("retained", "bytes"), unit_override("safe WAL size", "bytes")]),
        table("WAL senders", latest(
            "metric_replication", ["pid"],
            'i.name AS "instance", m.application_name AS "application", m.client_addr AS "client", '
            'm.state AS "state", m.sync_state AS "sync", m.sent_lag_bytes AS "sent lag", '
            'm.replay_lag_bytes AS "replay lag", m.replay_lag_seconds AS "replay lag time", '
            'm.time AS "seen"'),
              h=6, overrides=[unit_override("sent lag", "bytes"), unit_override("replay lag", "bytes"),
                              unit_override("replay lag time", "s")]),
        ts("WAL archiving", rate("metric_archiver", [], "i.name",
                                 [("archived/s", "archived_count"), ("failed/s", "failed_count")])),
        ts("Age of the last archived WAL", gauge("metric_archiver", [], "i.name",
                                                 [("age", "m.last_archived_age_seconds")], agg="max",
                                                 combine="max"), unit="s"),
        table("Subscriptions", latest(
            "metric_subscription", ["subname", "relid"],
            'i.name AS "instance", m.subname AS "subscription", m.relid AS "relid", '
            'm.received_lsn - m.latest_end_lsn AS "unreported bytes", m.last_msg_receipt AS "last message", '
            'm.enabled AS "enabled", m.apply_worker_running AS "apply worker running", '
            'm.apply_error_count AS "apply errors", m.sync_error_count AS "sync errors"'),
              h=6, description="Logical replication subscriptions of the selected instances. An enabled "
              "subscription whose apply worker is not running applies nothing (see the "
              "subscription_worker_down alert); empty from agents older than the columns."),
    ]


def wal():
    return "lasect-wal", "WAL, checkpoints and bgwriter", COMMON, [
        ts("WAL written", rate("metric_wal", [], "i.name", [("bytes", "wal_bytes")]), unit="Bps"),
        ts("WAL records and full-page images", rate("metric_wal", [], "i.name",
                                                    [("records", "wal_records"), ("full-page images", "wal_fpi")]),
           unit="ops"),
        ts("Checkpoints per hour", rate("metric_bgwriter", [], "i.name",
                                        [("timed", "checkpoints_timed"), ("requested", "checkpoints_req")],
                                        outer=[("timed", "3600 * r0"), ("requested", "3600 * r1")]),
           description="Requested checkpoints (WAL volume, manual CHECKPOINT) should be rare."),
        ts("Checkpoint write and sync time", rate("metric_bgwriter", [], "i.name",
                                                  [("write", "checkpoint_write_time_ms"),
                                                   ("sync", "checkpoint_sync_time_ms")]),
           unit="ms", description="Milliseconds spent per second of wall time."),
        ts("Buffers written per second", rate("metric_bgwriter", [], "i.name",
                                              [("checkpointer", "buffers_checkpoint"),
                                               ("bgwriter", "buffers_clean"),
                                               ("backends", "buffers_backend"),
                                               ("allocated", "buffers_alloc")]), unit="ops"),
        ts("WAL buffers full", rate("metric_wal", [], "i.name",
                                                       [("wal buffers full", "wal_buffers_full")])),
        ts("WAL write and sync time", rate("metric_wal", [], "i.name",
                                           [("write", "wal_write_time_ms"), ("sync", "wal_sync_time_ms")]),
           unit="ms", description="Needs track_wal_io_timing."),
        ts("bgwriter stopped for max pages", rate("metric_bgwriter", [], "i.name",
                                                  [("maxwritten_clean", "maxwritten_clean")])),
    ]


HOST_LABEL = "m.agent_id"


def host():
    return "lasect-host", "Host", COMMON, [
        ts("CPU usage", gauge("metric_host_cpu", [], HOST_LABEL, [("cpu", "m.usage_percent")], agent=True),
           unit="percent"),
        ts("Load", gauge("metric_host_cpu", [], HOST_LABEL,
                         [("load1", "m.load1"), ("load5", "m.load5"), ("load15", "m.load15")], agent=True)),
        ts("Memory", gauge("metric_host_memory", [], HOST_LABEL,
                           [("used", "m.used_bytes"), ("available", "m.available_bytes"),
                            ("total", "m.total_bytes"), ("swap used", "m.swap_used_bytes")], agent=True),
           unit="bytes"),
        ts("Disk throughput", gauge("metric_host_disk_io", ["device"], "m.agent_id || ' ' || m.device",
                                    [("read", "m.read_bytes_per_sec"), ("write", "m.write_bytes_per_sec")],
                                    agent=True), unit="Bps"),
        ts("Disk utilisation", gauge("metric_host_disk_io", ["device"], "m.agent_id || ' ' || m.device",
                                     [("busy", "m.util_percent")], agent=True), unit="percent"),
        ts("Disk operations", rate("metric_host_disk_io", ["device"], "m.agent_id || ' ' || m.device",
                                   [("reads", "reads"), ("writes", "writes")], agent=True), unit="iops"),
        ts("Network throughput", gauge("metric_host_network", ["interface"], "m.agent_id || ' ' || m.interface",
                                       [("rx", "m.rx_bytes_per_sec"), ("tx", "m.tx_bytes_per_sec")],
                                       agent=True), unit="Bps"),
        ts("Network errors and drops", rate("metric_host_network", ["interface"], "m.agent_id || ' ' || m.interface",
                                            [("errors", "rx_errors"), ("tx errors", "tx_errors"),
                                             ("drops", "rx_drops"), ("tx drops", "tx_drops")], agent=True,
                                            outer=[("errors", "r0 + r1"), ("drops", "r2 + r3")]),
           unit="pps"),
        table("Filesystems", latest(
            "metric_host_filesystem", ["mount_point"],
            'i.name AS "instance", m.mount_point AS "mount point", m.roles AS "holds", m.device AS "device", '
            'm.fs_type AS "type", m.total_bytes AS "size", m.used_bytes AS "used", m.free_bytes AS "free", '
            '100.0 * m.used_bytes / nullif(m.total_bytes, 0) AS "used %", '
            '100.0 * m.used_inodes / nullif(m.total_inodes, 0) AS "inodes used %"'),
              w=24, description="The filesystems holding each instance's data directory, WAL and tablespaces.",
              overrides=[unit_override(c, "bytes") for c in ("size", "used", "free")]
              + [unit_override("used %", "percent"), unit_override("inodes used %", "percent")]),
        ts("Filesystem use", gauge("metric_host_filesystem", ["mount_point"], "i.name || ' ' || m.mount_point",
                                   [("used %", "100.0 * m.used_bytes / nullif(m.total_bytes, 0)")]),
           unit="percent", w=24),
    ]


SQLSTATE_CLASSES = [
    ("00", "successful completion"), ("01", "warning"), ("02", "no data"),
    ("03", "SQL statement not yet complete"), ("08", "connection exception"),
    ("0A", "feature not supported"), ("0B", "invalid transaction initiation"),
    ("21", "cardinality violation"), ("22", "data exception"),
    ("23", "integrity constraint violation"), ("24", "invalid cursor state"),
    ("25", "invalid transaction state"), ("26", "invalid SQL statement name"),
    ("28", "invalid authorization specification"), ("2B", "dependent privilege descriptors still exist"),
    ("34", "invalid cursor name"), ("3D", "invalid catalog name"), ("3F", "invalid schema name"),
    ("40", "transaction rollback"), ("42", "syntax error or access rule violation"),
    ("44", "WITH CHECK OPTION violation"), ("53", "insufficient resources"),
    ("54", "program limit exceeded"), ("55", "object not in prerequisite state"),
    ("57", "operator intervention"), ("58", "system error"), ("F0", "configuration file error"),
    ("HV", "foreign data wrapper error"), ("P0", "PL/pgSQL error"), ("XX", "internal error"),
]


def logs():
    classes = ", ".join(f"('{c}', '{n}')" for c, n in SQLSTATE_CLASSES)
    return "lasect-logs", "Logs and errors", COMMON, [
        ts("Events by severity", f"""SELECT {bucket('m.time')} AS time, m.severity AS metric,
       count(*) * 60.0 / {SECONDS} AS "per minute"
FROM metric_log m
WHERE {INSTANCES} AND $__timeFilter(m.time)
GROUP BY 1, 2 ORDER BY 1, 2""", stack=True, w=12),
        ts("Errors by SQLSTATE class", f"""SELECT {bucket('m.time')} AS time,
       left(m.sqlstate, 2) || ' ' || coalesce(c.name, 'other') AS metric,
       count(*) * 60.0 / {SECONDS} AS "per minute"
FROM metric_log m
LEFT JOIN (VALUES {classes}) AS c (class, name) ON c.class = left(m.sqlstate, 2)
WHERE {INSTANCES} AND $__timeFilter(m.time) AND m.sqlstate IS NOT NULL AND m.sqlstate <> '00000'
GROUP BY 1, 2 ORDER BY 1, 2""", stack=True, w=12),
        table("Errors by SQLSTATE in the range", f"""SELECT m.sqlstate AS "SQLSTATE", coalesce(c.name, 'other') AS "class",
       m.severity AS "severity", count(*) AS "events", count(DISTINCT m.instance_id) AS "instances",
       left({ONE_LINE.format("min(m.message)")}, 200) AS "a message"
FROM metric_log m
LEFT JOIN (VALUES {classes}) AS c (class, name) ON c.class = left(m.sqlstate, 2)
WHERE {INSTANCES} AND $__timeFilter(m.time) AND m.sqlstate IS NOT NULL AND m.sqlstate <> '00000'
GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 50""", w=12),
        table("Slowest logged statements", f"""SELECT m.time AS "time", i.name AS "instance", m.database AS "database",
       m.duration_ms AS "duration", left({ONE_LINE.format("coalesce(m.statement, m.message)")}, 300) AS "statement"
FROM metric_log m JOIN instances i ON i.id = m.instance_id
WHERE {INSTANCES} AND $__timeFilter(m.time) AND m.duration_ms IS NOT NULL
ORDER BY m.duration_ms DESC LIMIT 50""", w=12, overrides=[unit_override("duration", "ms")]),
        table("Latest warnings and errors", f"""SELECT m.time AS "time", i.name AS "instance", m.severity AS "severity",
       m.sqlstate AS "SQLSTATE", m.database AS "database", m.user_name AS "user",
       m.application AS "application", left(m.message, 300) AS "message",
       left({ONE_LINE.format("m.statement")}, 300) AS "statement"
FROM metric_log m JOIN instances i ON i.id = m.instance_id
WHERE {INSTANCES} AND $__timeFilter(m.time)
  AND m.severity IN ('WARNING', 'ERROR', 'FATAL', 'PANIC')
ORDER BY m.time DESC LIMIT 200""", h=10),
        ts("Log lines the agent dropped, cut or could not parse", f"""SELECT {bucket('m.time')} AS time, i.name AS metric,
       sum(m.dropped_events) AS "dropped", sum(m.truncated_lines) AS "truncated",
       sum(m.unparsed_lines) AS "unparsed"
FROM metric_log_drops m JOIN instances i ON i.id = m.instance_id
WHERE {INSTANCES} AND $__timeFilter(m.time)
GROUP BY 1, 2 ORDER BY 1, 2""", w=24),
    ]


def settings():
    # The newest settings sample of each instance in the range (one pass for the times,
    # then the index on (instance_id, name, time)).
    newest = ("WITH last AS (SELECT m.instance_id, max(m.time) AS time FROM metric_settings m "
              "WHERE " + INSTANCES + " AND $__timeFilter(m.time) GROUP BY 1) "
              "SELECT m.* FROM metric_settings m "
              "JOIN last ON last.instance_id = m.instance_id AND last.time = m.time")
    return "lasect-settings", "Settings and changes", COMMON, [
        stat("Settings waiting for a restart", f"""SELECT count(*) AS pending FROM ({newest}) s
WHERE s.pending_restart""", thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        stat("Changes in the range", f"""SELECT count(*) AS changes FROM metric_setting_changes m
WHERE {INSTANCES} AND $__timeFilter(m.time)""", w=6),
        table("Changes", f"""SELECT m.time AS "time", i.name AS "instance", m.name AS "setting",
       m.old_setting AS "from", m.new_setting AS "to", m.pending_restart AS "needs restart"
FROM metric_setting_changes m JOIN instances i ON i.id = m.instance_id
WHERE {INSTANCES} AND $__timeFilter(m.time)
ORDER BY m.time DESC LIMIT 200""", w=12),
        table("Settings not at their default", f"""SELECT i.name AS "instance", s.name AS "setting",
       s.setting AS "value", s.unit AS "unit", s.source AS "source", s.pending_restart AS "needs restart"
FROM ({newest}) s JOIN instances i ON i.id = s.instance_id
WHERE s.source NOT IN ('default', 'override')
ORDER BY 1, 2""", h=14),
        table("Settings that differ between the selected instances", f"""SELECT s.name AS "setting",
       string_agg(i.name || ' = ' || s.setting || coalesce(' ' || s.unit, ''), ', ' ORDER BY i.name) AS "values"
FROM ({newest}) s JOIN instances i ON i.id = s.instance_id
GROUP BY s.name HAVING count(DISTINCT s.setting) > 1
ORDER BY 1""", h=14, w=12),
    ]


def lasect():
    # Every family in metric_families, whatever its number: each table is counted by a query
    # built here from the registry (query_to_xml runs it with the reader's privileges).
    per_family = f"""SELECT x.time, f.name AS metric, x.n / {SECONDS} AS "rows"
FROM metric_families f,
LATERAL xmltable('/table/row' PASSING query_to_xml(format(
    'SELECT date_bin(%L::interval, time, %L::timestamptz) AS t, count(*) AS n FROM %I '
    'WHERE time BETWEEN %L AND %L GROUP BY 1',
    make_interval(secs => $__interval_ms / 1000.0), 'epoch', f.table_name,
    $__timeFrom(), $__timeTo()), false, false, '')
  COLUMNS time timestamptz PATH 't', n int8 PATH 'n') AS x
ORDER BY 1, 2"""
    return "lasect-self", "Lasect itself", [LABEL_VAR, INSTANCE_VAR], [
        stat("Agents", "SELECT count(*) AS agents FROM agents WHERE disabled_at IS NULL"),
        stat("Agents silent for 2 minutes",
             "SELECT count(*) AS silent FROM agents WHERE disabled_at IS NULL "
             "AND last_seen < now() - interval '2 minutes'",
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        stat("Spool backlog (batches)",
             "SELECT coalesce(sum(spool_backlog_batches), 0) AS batches FROM agents WHERE disabled_at IS NULL",
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 100}]),
        stat("Samples stored per second",
             "SELECT sum(samples) / nullif(extract(epoch FROM $__timeTo()::timestamptz - "
             "$__timeFrom()::timestamptz), 0) AS per_second FROM ingest_batches "
             "WHERE received_at BETWEEN $__timeFrom()::timestamptz AND $__timeTo()::timestamptz",
             unit="short"),
        table("Agents", """SELECT a.id AS "agent", a.hostname AS "host", a.version AS "version",
       extract(epoch FROM now() - a.last_seen) AS "last seen",
       a.spool_backlog_batches AS "backlog batches", a.spool_backlog_bytes AS "backlog",
       a.cert_not_after AS "certificate expires", a.control_connected_at AS "control stream since",
       a.disabled_at AS "disabled",
       (SELECT count(*) FROM instances i WHERE i.agent_id = a.id AND i.state <> 'removed') AS "instances"
FROM agents a ORDER BY a.id""", overrides=[unit_override("last seen", "s"), unit_override("backlog", "bytes")]),
        ts("Batches and samples stored per second", f"""SELECT {bucket('received_at')} AS time, agent_id AS metric,
       count(*) / {SECONDS} AS "batches", sum(samples) / {SECONDS} AS "samples"
FROM ingest_batches
WHERE received_at BETWEEN $__timeFrom()::timestamptz AND $__timeTo()::timestamptz
GROUP BY 1, 2 ORDER BY 1, 2""", w=12,
           description="From ingest's de-duplication records (ingest_batches), by agent."),
        ts("Rows stored per second, by family", per_family, w=12, stack=True, unit="rps",
           description="Rows of each metric table (every family of metric_families) by sample time."),
        table("Collector failures in the range", f"""SELECT max(m.time) AS "last", i.name AS "instance",
       m.collector AS "collector", m.kind AS "kind", m.sqlstate AS "SQLSTATE", count(*) AS "events",
       sum(m.suppressed) AS "suppressed", left(min(m.message), 300) AS "message"
FROM metric_collector_event m JOIN instances i ON i.id = m.instance_id
WHERE {INSTANCES} AND $__timeFilter(m.time)
GROUP BY 2, 3, 4, 5 ORDER BY 1 DESC""", h=7,
              description="Families an agent could not collect (missing extension, privilege, timeout)."),
        ts("Instances: seconds since the last sample", f"""SELECT {bucket('m.time')} AS time, i.name AS metric,
       max(extract(epoch FROM m.time - m.prev)) AS "gap"
FROM (SELECT time, instance_id, lag(time) OVER (PARTITION BY instance_id ORDER BY time) AS prev
      FROM metric_database WHERE instance_id IN ($instance) AND {LOOKBACK.replace('m.time', 'time')}) m
JOIN instances i ON i.id = m.instance_id
WHERE $__timeFilter(m.time)
GROUP BY 1, 2 ORDER BY 1, 2""", unit="s", w=24,
           description="Largest gap between two database samples of an instance: "
                       "a rising line is an agent or a network in trouble."),
    ]


# An alert of the selected instances, or of the agent of one (agent-level alerts).
ALERT_SCOPE = ("({a}.instance_id IN ($instance) OR ({a}.instance_id IS NULL AND {a}.agent_id IN "
               "(SELECT agent_id FROM instances WHERE id IN ($instance))))")


def alerts():
    scope_a = ALERT_SCOPE.format(a="a")
    scope_e = ALERT_SCOPE.format(a="e")
    who = "coalesce(i.name, a.agent_id, '')"
    return "lasect-alerts", "Alerts", COMMON, [
        stat("Firing", f"SELECT count(*) AS firing FROM alert_instances a "
                       f"WHERE a.state = 'firing' AND {scope_a}",
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        stat("Pending", f"SELECT count(*) AS pending FROM alert_instances a "
                        f"WHERE a.state = 'pending' AND {scope_a}",
             thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        stat("Active silences", "SELECT count(*) AS silences FROM alert_silences "
                                "WHERE removed_at IS NULL AND now() BETWEEN starts_at AND ends_at"),
        stat("Rules failing to evaluate", "SELECT count(*) AS failing FROM alert_rules "
                                          "WHERE enabled AND last_error IS NOT NULL",
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        table("Firing and pending", f"""SELECT r.severity AS "severity", a.state AS "state", r.name AS "rule",
       {who} AS "instance", a.key_labels::text AS "labels", a.since AS "since",
       a.last_value AS "value", a.annotations ->> 'summary' AS "summary",
       a.acknowledged_at AS "acknowledged"
FROM alert_instances a JOIN alert_rules r ON r.id = a.rule_id
LEFT JOIN instances i ON i.id = a.instance_id
WHERE a.state IN ('firing', 'pending') AND {scope_a}
ORDER BY CASE r.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, a.since""",
              description="The alert's summary as its rule's annotation renders it."),
        ts("Alerts starting to fire, by severity", f"""SELECT {bucket('e.at')} AS time, e.severity AS metric,
       count(*) AS "alerts"
FROM alert_events e
WHERE e.to_state = 'firing' AND {scope_e} AND $__timeFilter(e.at)
GROUP BY 1, 2 ORDER BY 1, 2""", stack=True, w=12),
        table("Silences", """SELECT s.matchers AS "matchers", s.starts_at AS "from", s.ends_at AS "until",
       s.comment AS "comment", CASE WHEN now() BETWEEN s.starts_at AND s.ends_at THEN 'active'
       ELSE 'upcoming' END AS "state"
FROM alert_silences s
WHERE s.removed_at IS NULL AND s.ends_at > now()
ORDER BY s.starts_at""", w=12),
        table("History", f"""SELECT e.at AS "time", e.rule_name AS "rule", e.severity AS "severity",
       coalesce(i.name, e.agent_id, '') AS "instance", e.from_state || ' → ' || e.to_state AS "change",
       e.value AS "value", e.threshold AS "threshold", e.silenced AS "silenced",
       e.annotations ->> 'summary' AS "summary"
FROM alert_events e LEFT JOIN instances i ON i.id = e.instance_id
WHERE {scope_e} AND $__timeFilter(e.at)
ORDER BY e.at DESC LIMIT 500""", h=10),
        table("Rules", """SELECT r.name AS "rule", r.severity AS "severity", r.enabled AS "enabled",
       r.source AS "source", r.condition ->> 'kind' AS "kind", r.for_secs AS "for",
       r.last_evaluated_at AS "last evaluated", r.last_error AS "error",
       r.annotations ->> 'summary' AS "summary"
FROM alert_rules r ORDER BY r.name""", h=10, overrides=[unit_override("for", "s")]),
    ]


DASHBOARDS = [fleet, instance, statements, waits, locks, tables, replication, wal, host, logs,
              settings, lasect, alerts]


# ---------------------------------------------------------------- layout and JSON

def layout(panels):
    """Panels left to right, wrapping at 24 columns; rows span the width."""
    out, x, y, line_h, next_id = [], 0, 0, 0, 1
    for p in panels:
        if p.kind == "row" or x + p.w > 24:
            y += line_h
            x, line_h = 0, 0
        grid = {"h": p.h, "w": p.w, "x": x, "y": y}
        out.append(panel_json(p, next_id, grid))
        next_id += 1
        x += p.w
        line_h = max(line_h, p.h)
        if p.kind == "row":
            y += p.h
            x, line_h = 0, 0
    return out


def panel_json(p, pid, grid):
    if p.kind == "row":
        return {"id": pid, "type": "row", "title": p.title, "collapsed": False, "gridPos": grid,
                "panels": []}
    defaults = {}
    if p.unit:
        defaults["unit"] = p.unit
    defaults.update(p.field or {})
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": grid,
        "fieldConfig": {"defaults": defaults, "overrides": p.overrides or []},
        "options": p.options or {},
        "targets": [{
            "refId": "A",
            "datasource": DS,
            "editorMode": "code",
            "format": p.fmt,
            "rawQuery": True,
            "rawSql": p.sql,
        }],
    }


def dashboard(build):
    uid, title, variables, panels = build()
    return {
        "uid": uid,
        "title": "Lasect / " + title,
        "tags": ["lasect"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["lasect"], "asDropdown": True,
                   "title": "Lasect dashboards", "includeVars": True, "keepTime": True}],
        "templating": {"list": variables},
        "panels": layout(panels),
    }


def render():
    return {f"{d['uid']}.json": json.dumps(d, indent=2, ensure_ascii=False) + "\n"
            for d in (dashboard(b) for b in DASHBOARDS)}


def main(argv):
    files = render()
    if argv[1:] == ["--check"]:
        present = {p.name for p in OUT.glob("*.json")} if OUT.is_dir() else set()
        stale = sorted(n for n, text in files.items()
                       if not (OUT / n).is_file() or (OUT / n).read_text() != text)
        extra = sorted(present - set(files))
        for name in stale:
            print(f"dashboards/json/{name} differs from generate.py", file=sys.stderr)
        for name in extra:
            print(f"dashboards/json/{name} is not made by generate.py", file=sys.stderr)
        if stale or extra:
            print("run: python3 dashboards/generate.py", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print("usage: generate.py [--check]", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
