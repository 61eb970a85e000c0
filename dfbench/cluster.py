"""The Ray backend (``--backend ray``): samples gathered as Ray tasks, scored by model actors, stored here.

- **Gathering**: one Ray task per sample (`gather_task`) decodes it once for every unfinished cell of the suite
  (the split filter graph), perturbs, finds faces and cuts crops, in a work folder local to its node. Its result,
  the uint8 crops and the stage clock, stays in Ray's object store on that node. Ray retries the task where its
  node dies (`GATHER_RETRIES`). A sample's own failure is not retried: bad media is a status row already (as in
  a local run), and any other exception ends the run as it would locally.
- **Scoring**: `ModelActor` holds one loaded adapter, one per GPU of the cluster; on a CPU-only cluster there
  are ``--workers`` of them (default `default_actors`). An actor takes a gathered sample as an argument, so Ray
  moves the crops from the gathering node to the actor's node; they never pass through this process. The actor
  returns the sample's frame and task rows. Actors run calls in the order their samples arrive
  (``allow_out_of_order_execution``), and Ray restarts an actor whose node died and retries its calls. A retried
  call whose sample was lost with its node makes Ray run the gathering task again (lineage reconstruction).
- **Backpressure**: at most `in_flight` samples are being gathered or waiting for a model at a time, whatever
  the dataset's size; the next sample is submitted as one is finished.
- **The store**: this process (the driver) is its only writer. Each sample's rows are committed as they arrive
  (`dfbench.pipeline.execute`), so a rerun after the driver is killed resumes from them.

Every node must see the dataset files, the weights file and ``DFBENCH_CACHE_DIR`` at the same paths as the
driver (a shared filesystem), and run the same dfbench install (README "Past one machine").
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dfbench import scoring
from dfbench.config import Cell, RunConfig, SuiteConfig
from dfbench.detectors import get_detector
from dfbench.errors import ConfigError, DfbenchError
from dfbench.faces import SampleCrops
from dfbench.gather import Gatherer
from dfbench.pipeline import Job, Prepared, Rows, check_free_space, make_attacker, sample_rows
from dfbench.store import FrameRow, TaskRow
from dfbench.timing import StageClock

log = logging.getLogger(__name__)

GATHER_RETRIES = 4       # ours: how often Ray runs a sample's gathering again after its node died
ACTOR_RESTARTS = 4       # ours: how often Ray restarts a model actor whose node died (its calls are retried)
ACTOR_SHARE = 5          # ours: a CPU-only cluster gets one model actor per this many CPUs (inference took 20 %
#                          of the CPU time of the 24-video video-ops run in README "Speed": 202 s of 986 s)
# One CPU per task, retried where its node died, never where it raised; spread over the nodes (Ray's default packs
# a node before the next one gets work, which leaves the first nodes' disks and caches doing everything).
TASK_OPTIONS = {"num_cpus": 1, "max_retries": GATHER_RETRIES, "retry_exceptions": False,
                "scheduling_strategy": "SPREAD"}
FORWARDED_ENV = ("DFBENCH_", "HF_HUB_OFFLINE", "HF_HOME", "TORCH_HOME")   # the driver's settings every node needs


def default_actors(cpus: float, gpus: float, workers: int | None, device: str) -> tuple[int, str]:
    """The number of model actors and their device: one per GPU where the cluster has GPUs (and ``--device`` is
    not ``cpu``), else ``--workers`` of them, or one per `ACTOR_SHARE` CPUs.

    >>> default_actors(16, 2, None, "auto")
    (2, 'cuda')
    >>> default_actors(32, 0, None, "auto"), default_actors(2, 0, None, "auto"), default_actors(32, 0, 3, "cpu")
    ((6, 'cpu'), (1, 'cpu'), (3, 'cpu'))
    """
    if gpus >= 1 and device != "cpu":
        return int(gpus), "cuda"
    if device not in ("auto", "cpu"):
        raise ConfigError(f"--device {device} was asked for, but the Ray cluster has no GPU; use --device cpu or "
                          "auto.")
    return (workers if workers else max(1, int(cpus) // ACTOR_SHARE)), "cpu"


def physical_cores() -> int:
    """The physical cores this process may run on: torch's default intra-op thread count on Linux, which a
    local run scores with (float sums in another order would change the last bits of a CPU score)."""
    cores = set()
    for cpu in os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1):
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            cores.add(("", str(cpu)))
    return max(1, len(cores))


def gather_task(gatherer: Gatherer, sample_id: str, path: str, cells: list[Cell],
                min_free: int) -> tuple[SampleCrops, StageClock]:
    """One sample's crops for `cells` (kept crops where the face cache has them), on whichever node Ray chose,
    with a work folder of that node's own that is removed after."""
    import cv2
    import ray

    cv2.setNumThreads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    kept = gatherer.kept(sample_id, Path(path), cells)
    if kept is not None:
        return kept[0]._replace(crops=kept[0].crops.copy()), kept[1]   # memory-mapped: a copy travels
    workdir = Path(tempfile.mkdtemp(prefix="dfbench-work-"))
    try:
        check_free_space(workdir, min_free)
        return gatherer.gather(sample_id, Path(path), cells, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class ModelActor:
    """One loaded adapter in a Ray actor: gathered samples in, their frame and task rows out."""

    def __init__(self, config: RunConfig, weights: Any, device: str) -> None:
        import torch

        if device == "cpu":           # Ray sets OMP_NUM_THREADS=1; a local run's count keeps the scores bit-equal
            torch.set_num_threads(physical_cores())
        self.adapter = get_detector(config.detector)
        self.adapter.load(weights, device, config.precision, config.trust_checkpoint)
        self.batch_size = config.batch_size
        self.config = config
        self._attackers: dict[str, Any] = {}        # suite hash -> the attacker of its adversarial cells

    def describe(self) -> dict[str, str]:
        """What the run's identity must agree with: the weights' digest, the device type and the precision."""
        return {"weights_sha256": self.adapter.weights_sha256, "device_type": self.adapter.device.split(":")[0],
                "precision": self.adapter.precision}

    def score(self, suite: SuiteConfig, gathered: tuple[SampleCrops, StageClock],
              labels: dict[str, int] | None = None) -> tuple[list[FrameRow], list[TaskRow], StageClock]:
        crops, clock = gathered
        if suite.hash not in self._attackers:
            self._attackers[suite.hash] = make_attacker(self.config, suite, None, self.adapter, labels or {})
        attacker = self._attackers[suite.hash]
        frames, tasks = sample_rows(suite, scoring.start(self.adapter, crops, self.batch_size, attacker), clock)
        return frames, tasks, clock


class RayBackend:
    """Joins (or starts) a Ray cluster for one command, and gives `dfbench.pipeline.execute` its rows.

    Use it as a context manager: leaving it kills the model actors and disconnects (shutting down the local
    instance it started, if any)."""

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'dfbench[ray]'.") from None
        self.ray = ray
        self.address = address
        if address not in (None, "auto", "local") and not ray.is_initialized():
            check_reachable(address)      # before the model loads
        self._owns = False
        self._actors: list[Any] = []
        self._actor_key: tuple | None = None
        self._checked = False
        self._env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}

    def __enter__(self) -> RayBackend:
        ray = self.ray
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            env = self._env
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=False,
                         runtime_env={"env_vars": env} if env else None)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"join the Ray cluster at {self.address!r}" if self.address else "start a local Ray instance"
                raise ConfigError(f"Could not {where}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
            self._owns = True
        resources = ray.cluster_resources()
        self.cpus, self.gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if self.cpus < 1:
            raise ConfigError("The Ray cluster has no CPU to gather samples on.")
        return self

    def __exit__(self, *exc: object) -> None:
        for actor in self._actors:
            self.ray.kill(actor)
        self._actors = []
        if self._owns:
            self.ray.shutdown()
            self._owns = False

    @property
    def slots(self) -> int:
        """Samples gathered at a time: one per CPU of the cluster (CPU model actors reserve none)."""
        return max(1, int(self.cpus))

    def actors(self, prep: Prepared) -> list[Any]:
        """The model actors for `prep`'s detector, started once per command (loading their model while the first
        samples are gathered); `check_actors` compares them with the run's identity."""
        config = prep.config
        key = (config.detector, config.weights, config.precision, config.trust_checkpoint, config.batch_size)
        if self._actors and self._actor_key == key:
            return self._actors
        ray = self.ray
        n, device = default_actors(self.cpus, self.gpus, config.workers, config.device)
        options: dict[str, Any] = {"max_restarts": ACTOR_RESTARTS, "max_task_retries": ACTOR_RESTARTS,
                                   "allow_out_of_order_execution": True, "scheduling_strategy": "SPREAD"}
        if device == "cuda":
            options.update(num_gpus=1, num_cpus=1)
        else:   # shares its node's cores with the gathering tasks; idle threads sleep instead of spinning
            options.update(num_cpus=0, runtime_env={"env_vars": {**self._env, "OMP_WAIT_POLICY": "PASSIVE"}})
        remote = ray.remote(ModelActor).options(**options)
        weights = config.resolved_weights(bool(prep.adapter.card.demo_weights))
        for actor in self._actors:
            ray.kill(actor)
        self._actors = [remote.remote(config, weights, device) for _ in range(n)]
        self._actor_key, self._checked = key, False
        return self._actors

    def check_actors(self, prep: Prepared) -> None:
        """Before any row is stored: every actor's weights digest, device type and precision must be the run's
        (its identity was computed with this machine's model)."""
        if self._checked:
            return
        identity = prep.provenance["identity"]
        for found in self._get([a.describe.remote() for a in self._actors]):
            differs = {k: (identity[k], v) for k, v in found.items() if identity.get(k) != v}
            if differs:
                detail = ", ".join(f"{k}: {here!r} here, {there!r} on the cluster" for k, (here, there) in
                                   differs.items())
                raise ConfigError(f"The cluster's model actors would not run this run's model ({detail}). Run "
                                  "dfbench on a node like the cluster's (same weights file, same device kind), or "
                                  "pass --device cpu.")
        self._checked = True

    def rows(self, prep: Prepared, jobs: list[Job], clock: StageClock) -> Iterator[Rows]:
        """Each job's rows as its sample is finished (in any order); at most `slots` + 2 per actor samples in
        flight. The stage ``wait_for_ray`` is the time this process waited for the next finished sample."""
        ray = self.ray
        actors = self.actors(prep)
        gather = ray.remote(gather_task).options(**TASK_OPTIONS)
        gatherer, suite = ray.put(prep.gatherer), ray.put(prep.suite)
        labels = ray.put(prep.attacker.labels if prep.attacker is not None else None)
        in_flight = self.slots + 2 * len(actors)
        load = dict.fromkeys(range(len(actors)), 0)
        scoring_refs: dict[Any, tuple[int, Any]] = {}      # actor call -> (actor index, gathering task)
        queue = iter(jobs)

        def submit() -> None:
            for sample_id, path, cells in itertools.islice(queue, max(0, in_flight - len(scoring_refs))):
                gathered = gather.remote(gatherer, sample_id, str(path), cells, prep.config.min_free_bytes)
                index = min(load, key=load.__getitem__)
                scoring_refs[actors[index].score.remote(suite, gathered, labels)] = index, gathered
                load[index] += 1

        try:
            submit()
            self.check_actors(prep)
            while scoring_refs:
                waited = time.perf_counter()
                ready, _ = ray.wait(list(scoring_refs), num_returns=1)
                clock.add("wait_for_ray", time.perf_counter() - waited, 1)
                index, _ = scoring_refs.pop(ready[0])
                load[index] -= 1
                frames, tasks, sample_clock = self._get(ready[0])
                submit()                         # the next sample starts before this one is stored
                clock.merge(sample_clock)
                yield frames, tasks
        except BaseException:
            for call, (_, gathered) in scoring_refs.items():   # stopped: nothing more runs for this command
                ray.cancel(gathered)
                ray.cancel(call)
            raise

    def map(self, fn: Callable[..., Any], calls: Iterable[tuple]) -> Iterator[Any]:
        """``fn(*args)`` for each args tuple of `calls` as Ray tasks (one CPU each, retried where their node
        dies), at most `slots` + 2 at a time; results are yielded as they are finished (`dfbench.copies`)."""
        ray = self.ray
        task = ray.remote(fn).options(**TASK_OPTIONS)
        queue = iter(calls)
        pending = [task.remote(*args) for args in itertools.islice(queue, self.slots + 2)]
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                pending.extend(task.remote(*args) for args in itertools.islice(queue, 1))
                yield self._get(ready[0])
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise

    def _get(self, ref: Any) -> Any:
        """`ray.get`, with dfbench's own errors (a full disk on a node, say) raised as themselves."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (DfbenchError, KeyboardInterrupt)):
                raise cause from None
            raise


def check_reachable(address: str, seconds: float = 10.0) -> None:
    """A ConfigError unless something answers at the cluster's ``host:port`` (``ray://host:port`` too) within
    `seconds`: Ray itself keeps retrying an unreachable address for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not auto, ray://HOST:PORT or HOST:PORT.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"Could not join the Ray cluster at {address!r}: nothing answers there ({reason}). Start "
                          "it with 'ray start --head' or check the address.") from None


def backend_for(backend: str, address: str | None) -> RayBackend | None:
    """The backend object of ``--backend`` (None for ``local``)."""
    return RayBackend(address) if backend == "ray" else None
