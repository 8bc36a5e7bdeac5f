"""YSB-style tumbling count in Flink SQL (PyFlink local mini-cluster).

Usage: python flink_ysb.py EVENTS PARALLELISM [query|generator|print]

`query` (the measured job): a bounded `datagen` source of EVENTS ad events (the fields of
tidemark's `AdEvent`: user_id, page_id, ad_id in [0, 1000), event_type in {0, 1, 2}, ip), stamped
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

env.execute_sql(
    f"""
    CREATE TABLE events (
        user_id BIGINT,
        page_id BIGINT,
        ad_id INT,
        event_type INT,
        ip INT,
        ts AS CAST(CURRENT_TIMESTAMP AS TIMESTAMP_LTZ(3)),
        WATERMARK FOR ts AS ts
    ) WITH (
        'connector' = 'datagen',
        'number-of-rows' = '{events}',
        'rows-per-second' = '1000000000',
        'fields.user_id.kind' = 'random',
        'fields.page_id.kind' = 'random',
        'fields.ad_id.kind' = 'random',
        'fields.ad_id.min' = '0',
        'fields.ad_id.max' = '999',
        'fields.event_type.kind' = 'random',
        'fields.event_type.min' = '0',
        'fields.event_type.max' = '2',
        'fields.ip.kind' = 'random'
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
