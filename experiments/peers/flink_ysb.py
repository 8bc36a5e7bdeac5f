"""YSB-style tumbling count in Flink SQL (PyFlink local mini-cluster).

Usage: python flink_ysb.py EVENTS PARALLELISM [query|generator|print]

`query` (the measured job): a bounded `datagen` source of EVENTS ad events (the fields of
tidemark's `AdEvent`: user_id, page_id, ad_id in [0, 1000), event_type in {0, 1, 2}, ip, all
derived from one random number per event as tidemark derives them), stamped
with the wall clock as event time (as tidemark's closed loop stamps each batch with `now`), with a
watermark on it; views (event_type = 0) are mapped to their campaign (ad_id / 10: 100 campaigns
of 10 ads, the same static table as tidemark's) and counted per campaign in 10 s tumbling
event-time windows (window TVF); the rows go to a `blackhole` sink.
`generator`: the same source straight into the blackhole (the generator's own ceiling).
`print`: the query with a small input into a `print` sink (to check the results by eye).
"""

import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

events = int(sys.argv[1])
parallelism = int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "query"

t0 = time.time()
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
conf = env.get_config()
conf.set("parallelism.default", str(parallelism))
conf.set("pipeline.object-reuse", "true")
conf.set("table.exec.resource.default-parallelism", str(parallelism))

# One random 62-bit number per event, from which the fields follow as tidemark's generator derives
# them from one splitmix64 output r (user_id = r >> 40, page_id = (r >> 20) & 0xFFFFF,
# ad_id = (r & 0xFFFFFFFF) % 1000, event_type = (r >> 32) % 3, ip = r >> 8; Flink SQL has no
# shifts, so divisions by powers of two). One random draw per event instead of one per field:
# with five random fields the datagen source alone ran at about 0.5 M rows/s per worker, the
# whole query's rate, so the query measured the generator.
env.execute_sql(
    f"""
    CREATE TABLE events (
        r BIGINT,
        user_id AS r / 1099511627776,
        page_id AS MOD(r / 1048576, 1048576),
        ad_id AS CAST(MOD(MOD(r, 4294967296), 1000) AS INT),
        event_type AS CAST(MOD(r / 4294967296, 3) AS INT),
        ip AS CAST(MOD(r / 256, 2147483648) AS INT),
        ts AS CAST(CURRENT_TIMESTAMP AS TIMESTAMP_LTZ(3)),
        WATERMARK FOR ts AS ts
    ) WITH (
        'connector' = 'datagen',
        'number-of-rows' = '{events}',
        'rows-per-second' = '1000000000',
        'fields.r.kind' = 'random',
        'fields.r.min' = '0',
        'fields.r.max' = '4611686018427387903'
    )
    """
)

sink = "print" if mode == "print" else "blackhole"
if mode == "generator":
    env.execute_sql(
        f"""CREATE TABLE out_rows (user_id BIGINT, page_id BIGINT, ad_id INT, event_type INT,
            ip INT) WITH ('connector' = '{sink}')"""
    )
    insert = "INSERT INTO out_rows SELECT user_id, page_id, ad_id, event_type, ip FROM events"
else:
    env.execute_sql(
        f"""CREATE TABLE out_rows (window_end TIMESTAMP(3), campaign_id INT, view_count BIGINT)
            WITH ('connector' = '{sink}')"""
    )
    env.execute_sql(
        "CREATE TEMPORARY VIEW campaign_views AS "
        "SELECT ad_id / 10 AS campaign_id, ts FROM events WHERE event_type = 0"
    )
    insert = """
    INSERT INTO out_rows
    SELECT window_end, campaign_id, COUNT(*) AS view_count
    FROM TABLE(TUMBLE(
        TABLE campaign_views, DESCRIPTOR(ts), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end, campaign_id
    """

t1 = time.time()
env.execute_sql(insert).wait()
t2 = time.time()
print(f"flink mode={mode} events={events} parallelism={parallelism} "
      f"setup_s={t1 - t0:.3f} job_s={t2 - t1:.3f}", file=sys.stderr)
