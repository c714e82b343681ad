"""The benchmark harness (`make bench`, `python -m bench`): the daemon next to the raw readers.

Every scenario runs against the daemon and a raw baseline on the same data in
the same run, one after the other, on throwaway servers (PostgreSQL, MariaDB and
the Tansu broker from tests/integration/services.py):

- pg_small: 100k transactions of 3 rows, daemon vs pg_recvlogical (bench.pg)
- pg_big: one 1M-row (streamed) transaction, same comparison, and peak RSS
- mariadb_small: daemon vs mariadb-binlog and pymysqlreplication (bench.mariadb)
- latency: commit → broker ack and → consumer at 5k txn/s (bench.latency)
- wide: 30-column rows with jsonb and 1-4 KB text, daemon vs pg_recvlogical

The results go to the terminal and bench/results/latest.{md,json}; BENCHMARKS.md
explains them and keeps the latest accepted run.
"""
