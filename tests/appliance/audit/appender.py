"""A child process for the reliability tests: appends audit entries as fast as it can from
several threads and prints every acknowledged one (``<seq> <subject>``) the moment ``append``
returns, flushed, so that a parent that SIGKILLs it knows exactly what was acknowledged.

    python -m tests.appliance.audit.appender URL NODE_ID COUNT THREADS KEK_HEX CHECKPOINT_EVERY

The database must already be migrated.  Every ``CHECKPOINT_EVERY``-th entry is followed by a
checkpoint (0: none), so that kills also land in the middle of checkpointing.
"""

from __future__ import annotations

import itertools
import sys
import threading

from appliance.config import AuditConfig
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.services.audit import AuditLog
from appliance.storage import Database

ORIGIN = "medsign.test/audit"


def main(argv: list[str]) -> int:
    url, node_id, count, threads, kek, every = argv
    database = Database(url, pool_size=int(threads) + 2)
    holder = KeyHolder(KekStore(database))
    holder.adopt(Keyring(bytes.fromhex(kek)))
    audit = AuditLog(database, holder, AuditConfig(node_id=node_id, origin=ORIGIN,
                                                   checkpoint_interval_seconds=3600))
    numbers = itertools.count()
    lock = threading.Lock()

    def work(worker: int) -> None:
        while (i := next(numbers)) < int(count):
            subject = f"{node_id}-{i}"
            seq = audit.append("data", "test.append", f"worker:{worker}", subject, {"i": i})
            with lock:
                sys.stdout.write(f"{seq} {subject}\n")
                sys.stdout.flush()
            if int(every) and i % int(every) == 0:
                audit.checkpoint()

    pool = [threading.Thread(target=work, args=(w,)) for w in range(int(threads))]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    audit.close()
    sys.stdout.write("done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
