"""YSB-style tumbling count in Bytewax (its engine is timely dataflow, driven from Python).

Run by the driver as `python -m bytewax.testing -p PROCESSES -w 1 bytewax_ysb:flow` with the
environment variables YSB_EVENTS (total events), YSB_SEED and, to check the results,
YSB_PRINT=1.

The input is one partition per worker. Like tidemark's harness, each partition pre-generates a
pool of ad events (user_id, page_id, ad_id in [0, 1000), event_type in {0, 1, 2}, ip) before it
emits anything, and replays it in batches of 16384, stamping every event of a batch with the wall
clock as event time (tidemark's closed loop stamps each batch with `now`). The dataflow filters
views (event_type == 0), maps the ad to its campaign (ad_id // 10: 100 campaigns of 10 ads) and
counts per campaign with `count_window` over an `EventClock` and a 10 s `TumblingWindower`; the
counts go to a sink that drops them.
"""

import os
import random
import sys
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window
from bytewax.outputs import DynamicSink, StatelessSinkPartition

EVENTS = int(os.environ.get("YSB_EVENTS", "1000000"))
SEED = int(os.environ.get("YSB_SEED", "1"))
PRINT = os.environ.get("YSB_PRINT") == "1"
PARTITIONS = int(os.environ.get("YSB_PARTITIONS", "2"))
BATCH = 16384
# Partitions stamp their batches independently, so a key's worker sees timestamps out of order
# by up to a batch's processing time: the clock waits this long (bounded out-of-orderness)
# so that no view is dropped as late (checked with YSB_PRINT=1: no LATE lines).
WAIT_S = 60
POOL = 1 << 18
ADS, ADS_PER_CAMPAIGN = 1000, 10
VIEW = 0
# The static ad -> campaign table, keys as strings (Bytewax keys are strings).
CAMPAIGN = [str(ad // ADS_PER_CAMPAIGN) for ad in range(ADS)]


class _Partition(StatefulSourcePartition):
    def __init__(self, index, events):
        rng = random.Random(SEED * 1000003 + index)
        self.pool = [
            (
                rng.getrandbits(24),
                rng.getrandbits(20),
                rng.randrange(ADS),
                rng.randrange(3),
                rng.getrandbits(32),
            )
            for _ in range(min(POOL, max(events, 1)))
        ]
        self.left = events
        self.cursor = 0

    def next_batch(self):
        if self.left <= 0:
            raise StopIteration()
        n = min(BATCH, self.left)
        now = datetime.now(timezone.utc)
        batch = []
        while len(batch) < n:
            take = min(n - len(batch), len(self.pool) - self.cursor)
            batch.extend(
                (u, p, a, t, ip, now)
                for (u, p, a, t, ip) in self.pool[self.cursor : self.cursor + take]
            )
            self.cursor = (self.cursor + take) % len(self.pool)
        self.left -= n
        return batch

    def snapshot(self):
        return None


class AdEvents(FixedPartitionedSource):
    def list_parts(self):
        return [str(i) for i in range(PARTITIONS)]

    def build_part(self, step_id, for_part, resume_state):
        index = int(for_part)
        share = EVENTS // PARTITIONS + (1 if index < EVENTS % PARTITIONS else 0)
        return _Partition(index, share)


STATS = os.environ.get("YSB_STATS")  # a folder: each worker writes what its sinks saw


class _Tally(StatelessSinkPartition):
    """Drops the rows, adding up what it saw (rows are few: 100 per window)."""

    def __init__(self, name, worker):
        self.name, self.worker = name, worker
        self.rows = self.total = 0

    def write_batch(self, items):
        self.rows += len(items)
        if self.name == "counts":
            self.total += sum(count for _key, (_window, count) in items)
        if PRINT:
            for item in items:
                print(self.name, item, file=sys.stderr)

    def close(self):
        if STATS:
            path = os.path.join(STATS, f"{self.name}-{self.worker}-{os.getpid()}.txt")
            with open(path, "w") as f:
                f.write(f"{self.rows} {self.total}\n")


class Tally(DynamicSink):
    def __init__(self, name):
        self.name = name

    def build(self, step_id, worker_index, worker_count):
        return _Tally(self.name, worker_index)


ALIGN = datetime(2020, 1, 1, tzinfo=timezone.utc)

flow = Dataflow("ysb")
events = op.input("events", flow, AdEvents())
views = op.filter("views", events, lambda e: e[3] == VIEW)
counts = count_window(
    "count",
    views,
    EventClock(lambda e: e[5], wait_for_system_duration=timedelta(seconds=WAIT_S)),
    TumblingWindower(length=timedelta(seconds=10), align_to=ALIGN),
    lambda e: CAMPAIGN[e[2]],
)
op.output("out", counts.down, Tally("counts"))
op.output("late", counts.late, Tally("late"))
