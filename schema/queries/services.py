"""Reads about the running services, written by `fte up`'s supervisor (crash-loop alerts)."""

# One row per service and minute bucket in which it was restarting in a loop.
CRASH_LOOPS_SINCE = """
SELECT a.raised_at, s.key AS service, (s.value ->> 'value')::float AS restarts_in_window,
       (s.value ->> 'exit_code')::int AS exit_code, s.value ->> 'hint' AS hint
  FROM alerts a, jsonb_each(a.detail -> 'subjects') AS s
 WHERE a.kind = 'crash_loop' AND a.raised_at >= %(since)s
 ORDER BY a.raised_at DESC
 LIMIT 50
"""
