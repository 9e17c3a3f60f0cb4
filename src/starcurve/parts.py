"""Per-partition jobs over inputs of any size: one output part per input partition, resumable,
in this process or on a Dask cluster, merged by streaming.

A run writing ``OUT.parquet`` keeps its work in ``OUT.parquet.parts/``:

- ``manifest.json``: the options of the run; a re-run with other options is refused;
- ``part-NNNNN.parquet`` then ``part-NNNNN.json`` (its summary), each written atomically, for input
  partition NNNNN (``starcurve.data.io.partitions``). A part is done when its ``.json`` exists,
  so a run killed at any moment (the client or a worker, kill -9 included) and re-run with the same
  command computes only the partitions without one. A partition that cannot be read (a
  ``StarcurveError`` of the job) is a skip of its rows with a warning, not the end of the run.

The merged output holds the parts in partition order (input files by name, rows in file order) and
is written by streaming one part at a time (memory: one part). Where a job runs: ``workers=0`` in
this process; else on Dask: the cluster at ``scheduler`` (an address), or a local cluster of
``workers`` processes with ``threads`` threads each (default: one single-thread worker per core).
Workers write the parts themselves, so with a remote cluster the output folder must be on a file
system that every worker sees. Nothing large travels back to the client: a summary per part.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from starcurve.data.io import Partition, read_parquet, write_parquet
from starcurve.errors import StarcurveError, read_json_object
from starcurve.files import atomic_json, atomic_write

log = logging.getLogger("starcurve")

# A job: partition -> (output rows, {"rows_in": n, "skipped": {"object_id/band": reason}}); a job
# whose output keeps skipped rows (with their reason) also says how many rows are "answers"
Job = Callable[[Partition], "tuple[pa.Table, dict]"]


def cores() -> int:
    """CPU cores this process may use (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Summary:
    """What a run did: light curves ((object, band) rows) in, written, skipped by reason, time and
    the cores it had."""

    partitions: int = 0
    computed: int = 0  # partitions computed in this run (the others were done before)
    objects_in: int = 0
    written: int = 0  # answers (rows not skipped)
    rows_out: int = 0  # rows in the output (with a job that keeps its skipped rows, more)
    skipped: Counter = field(default_factory=Counter)  # reason -> objects
    examples: dict = field(default_factory=dict)  # "object_id/band" -> reason (a few)
    seconds: float = 0.0
    cores: int = 1
    task_seconds: float = 0.0  # summed over the parts computed in this run
    new_objects: int = 0  # written by the parts computed in this run

    def add(self, info: dict, computed: bool) -> None:
        self.objects_in += info["rows_in"]
        self.written += info.get("answers", info["rows"])
        self.rows_out += info["rows"]
        self.skipped.update(info["reasons"])
        self.examples.update(list(info["examples"].items())[: max(0, 5 - len(self.examples))])
        if computed:
            self.computed += 1
            self.task_seconds += info["seconds"]
            self.new_objects += info.get("answers", info["rows"])

    def per_core_second(self) -> float:
        """Objects written per core-second of wall time, counting the parts computed in this run."""
        return self.new_objects / max(self.seconds * self.cores, 1e-9)

    def to_dict(self) -> dict:
        return {"partitions": self.partitions, "computed": self.computed,
                "objects_in": self.objects_in, "written": self.written,
                "skipped": dict(self.skipped), "seconds": round(self.seconds, 3),
                "cores": self.cores, "task_seconds": round(self.task_seconds, 3),
                "objects_per_core_second": round(self.per_core_second(), 3)}  # fmt: skip

    def __str__(self) -> str:
        why = ", ".join(f"{k}: {v}" for k, v in self.skipped.most_common()) or "none"
        return (f"{self.objects_in} light curves in, {self.written} written, "
                f"{sum(self.skipped.values())} skipped ({why}); {self.seconds:.1f} s, "
                f"{self.per_core_second():.1f} light curves per core-second ({self.cores} cores, "
                f"{self.computed}/{self.partitions} partitions computed now)")  # fmt: skip


def in_process(n_parts: int, workers: int | None, scheduler: str | None) -> bool:
    """Whether a run stays in this process: ``workers=0``; or one partition (a cluster would cost
    more to start than it saves) or no Dask installed, when neither workers nor a scheduler is
    asked for."""
    if scheduler is not None:
        return False
    return workers == 0 or (workers is None and (n_parts <= 1 or not _has_dask()))


def threads_for(
    n_parts: int, workers: int | None, scheduler: str | None, threads: int | None
) -> int:
    """Threads per task: as asked, else every core when the run stays in this process, else 1."""
    return threads or (cores() if in_process(n_parts, workers, scheduler) else 1)


def _has_dask() -> bool:
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


def run_part(job: Job, part: Partition, index: int, folder: str) -> dict:
    """Compute one partition into ``folder/part-NNNNN.parquet`` + ``.json``; return the summary.

    This is the function that runs on a worker (it is what Dask ships: plain data and ``job``).
    """
    t0 = time.perf_counter()
    base = Path(folder) / f"part-{index:05d}"
    try:
        table, info = job(part)
    except StarcurveError as e:  # e.g. a damaged page of a shard: its rows are skipped, not the run
        log.warning("skipped partition %d (%s): %s", index, part.path, e)
        table = None
        n = part.rows or 0
        info = {"rows_in": n, "skipped": {f"{part.path}#{index}": UNREADABLE},
                "reasons": {UNREADABLE: n}}  # fmt: skip
    rows, skipped = (0 if table is None else table.num_rows), info["skipped"]
    if table is not None:
        write_parquet(table, base.with_suffix(".parquet"))
    summary = {"rows_in": info["rows_in"], "rows": rows, "answers": info.get("answers", rows),
               "reasons": info.get("reasons") or dict(Counter(skipped.values())),
               "examples": dict(list(skipped.items())[:5]),
               "seconds": time.perf_counter() - t0}  # fmt: skip
    atomic_json(summary, base.with_suffix(".json"))  # last: the part is done
    return summary


UNREADABLE = "unreadable partition (see the warning); its rows are not in the output"


def _done(folder: Path, i: int) -> bool:
    """A part is done when its summary exists (written last; an unreadable one has no table)."""
    return (folder / f"part-{i:05d}.json").exists()


def run(
    job: Job, parts: list[Partition], output: str | os.PathLike, setup: dict, *,
    workers: int | None = None, threads: int = 1, scheduler: str | None = None,
    desc: str = "run", nothing: str = "no object could be processed",
) -> Summary:  # fmt: skip
    """Run ``job`` on every partition (see module docstring), merge into ``output``, return what
    happened. A ``StarcurveError`` (a problem with the options) removes the parts, so that it never
    blocks the corrected run; any other failure or an interruption keeps them for the re-run."""
    output = Path(output)
    folder = output.with_name(output.name + ".parts")
    manifest = folder / "manifest.json"
    setup = {**setup, "partitions": len(parts)}
    if manifest.exists() and read_json_object(manifest, "manifest") != setup:
        raise StarcurveError(f"{folder} holds a run with other options; delete it or repeat them")
    t0 = time.time()
    summary = Summary(partitions=len(parts))
    try:
        atomic_json(setup, manifest)
        todo = []
        for i, p in enumerate(parts):
            if _done(folder, i):
                summary.add(
                    read_json_object(folder / f"part-{i:05d}.json", "part summary"), computed=False
                )
            else:
                todo.append(i)
        total = sum(p.rows or 0 for p in parts) or None
        with tqdm(total=total, initial=summary.objects_in if total else 0, desc=desc, unit="LC",
                  dynamic_ncols=True, smoothing=0.1) as bar:  # fmt: skip
            for info in _compute(job, parts, todo, folder, workers, threads, scheduler, summary):
                summary.add(info, computed=True)
                bar.update(info["rows_in"])
                bar.set_postfix(skipped=sum(summary.skipped.values()), refresh=False)
        if summary.rows_out == 0:
            why = "; ".join(f"{k} ({v})" for k, v in list(summary.examples.items())[:3])
            raise StarcurveError(f"{nothing} ({why or 'the input is empty'})")
        files = [folder / f"part-{i:05d}.parquet" for i in range(len(parts))]
        merge([f for f in files if f.exists()], output)
    except StarcurveError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    summary.seconds = time.time() - t0
    shutil.rmtree(folder)
    return summary


def _compute(job, parts, todo, folder, workers, threads, scheduler, summary):
    """Yield the summary of each partition in ``todo`` as it finishes (in any order)."""
    if not todo:
        return
    if in_process(len(todo), workers, scheduler):
        from threadpoolctl import threadpool_limits

        summary.cores = threads
        # --threads bounds numpy's BLAS too (a Dask nanny starts its workers with OMP, MKL and
        # OpenBLAS at one thread): BLAS sums depend on the thread count, and an in-process run with
        # --threads 1 must give the very numbers a one-thread worker gives
        with threadpool_limits(threads):
            for i in todo:
                yield run_part(job, parts[i], i, str(folder))
        return
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise StarcurveError("Dask is not installed: pip install 'starcurve[dask]', "
                             "or leave out --workers / --scheduler to run in this process") from None  # fmt: skip
    if scheduler:
        client, cluster = Client(scheduler), None
        summary.cores = sum(client.nthreads().values())
    else:
        workers = workers or max(cores() // threads, 1)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)  # fmt: skip
        client = Client(cluster)
        summary.cores = workers * threads
    try:
        futures = [client.submit(run_part, job, parts[i], i, str(folder), key=f"part-{i}-{folder}",
                                 pure=False) for i in todo]  # fmt: skip
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def merge(files: list[Path], output: Path) -> Path:
    """Concatenate Parquet parts into ``output`` one at a time (memory: one part), atomically."""
    first = read_parquet(files[0])

    def write(f) -> None:
        with pq.ParquetWriter(f, first.schema, compression="zstd") as w:
            for path in files:
                table = first if path == files[0] else read_parquet(path)
                if table.num_rows:
                    w.write_table(table.cast(first.schema))

    return atomic_write(output, write)
