"""pymysqlreplication's own row loop over a binlog range: a baseline for the MariaDB scenario.

Run as a separate process so it has the interpreter to itself:

    python -m bench.pyrepl_loop --port 3306 --file binlog.000001 --pos 4 \\
        --end-file binlog.000001 --end-pos 123456

It reads the range with BinLogStreamReader (non-blocking: it stops at the end
of the binlog), touches every value of every row of every rows event, and
prints one JSON line: {"rows": N, "events": N, "seconds": S}. `seconds` runs
from creating the reader to the last row (the interpreter's start-up and
imports are not in it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyrepl_loop")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default="")
    parser.add_argument("--server-id", type=int, default=4343)
    parser.add_argument("--file", required=True)
    parser.add_argument("--pos", type=int, required=True)
    parser.add_argument("--end-file", required=True)
    parser.add_argument("--end-pos", type=int, required=True)
    args = parser.parse_args(argv)

    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    end = (args.end_file, args.end_pos)
    started = time.perf_counter()
    stream = BinLogStreamReader(
        connection_settings={
            "host": args.host,
            "port": args.port,
            "user": args.user,
            "passwd": args.password,
        },
        server_id=args.server_id,
        log_file=args.file,
        log_pos=args.pos,
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
    )
    rows = events = 0
    touched = 0
    try:
        for event in stream:
            events += 1
            for row in event.rows:
                if "values" in row:
                    touched += len(tuple(row["values"].values()))
                else:
                    touched += len(tuple(row["before_values"].values()))
                    touched += len(tuple(row["after_values"].values()))
                rows += 1
            if (stream.log_file, stream.log_pos) >= end:
                break
    finally:
        stream.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "events": events, "values": touched, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
