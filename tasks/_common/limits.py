"""How many downloads and engine runs may run at once.

With the thread task runner everything runs in this process, and a process-local semaphore per limit is
exact and leaves no state behind. With Dask the tasks run in other processes and machines, so the limit is a
Prefect global concurrency limit on the server (created or updated from the job at flow start): a slot is
held under a lease that the holder keeps renewing, and the slot of a holder killed outright comes back only
when the server expires its lease.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext

from offset_cube.config import JobConfig

#: Lease of a held server-side slot, renewed while held (Prefect's minimum is 60 s).
SLOT_LEASE_S = 120
#: One limit for every engine run of every job: engines are what overcommits a machine.
ENGINE_LIMIT = "offset-cube-engines"

_local_lock = threading.Lock()
_local_slots: dict[str, tuple[int, threading.BoundedSemaphore]] = {}


def distributed(job: JobConfig) -> bool:
    """True when tasks may run outside this process (Dask), so limits must live on the Prefect server."""
    return job.runner.task_runner == "dask"


def upsert_limit(name: str, slots: int) -> None:
    """Create or update a global concurrency limit on the Prefect server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, slots)


def prepare_limits(job: JobConfig, limits: dict[str, int]) -> None:
    """At flow start: create/update the server-side limits a distributed run needs (nothing for threads)."""
    if distributed(job):
        for name, slots in limits.items():
            upsert_limit(name, slots)


@contextlib.contextmanager
def slot(job: JobConfig, name: str, slots: int) -> Iterator[None]:
    """Hold one slot of limit ``name`` (``slots`` wide) while the block runs; plain calls outside a flow run
    (tests, scripts) are not limited."""
    if FlowRunContext.get() is None:
        yield
    elif distributed(job):
        with concurrency(name, occupy=1, lease_duration=SLOT_LEASE_S):
            yield
    else:
        with _local_semaphore(name, slots):
            yield


def _local_semaphore(name: str, slots: int) -> threading.BoundedSemaphore:
    with _local_lock:
        current = _local_slots.get(name)
        if current is None or current[0] != slots:
            current = (slots, threading.BoundedSemaphore(slots))
            _local_slots[name] = current
        return current[1]


def engine_limits(job: JobConfig) -> dict[str, int]:
    return {ENGINE_LIMIT: job.concurrency.engines}


@contextlib.contextmanager
def engine_slot(job: JobConfig) -> Iterator[None]:
    """Hold one engine slot (``concurrency.engines`` wide)."""
    with slot(job, ENGINE_LIMIT, job.concurrency.engines):
        yield
