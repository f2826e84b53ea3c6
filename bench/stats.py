"""bench/stats.py - a metric's values over the reps of a benchmark, and
their median and spread, as the reports print them ("median [min–max]").
Shared by bench/peers/run.py and bench/http/http_bench.py."""

import statistics
from dataclasses import dataclass


@dataclass
class Stat:
    values: list       # (rep, value) of every successful run

    def nums(self):
        return [v for _, v in self.values]

    @property
    def median(self):
        return statistics.median(self.nums())

    @property
    def lo(self):
        return min(self.nums())

    @property
    def hi(self):
        return max(self.nums())
