"""EnKF members on Dask workers: one stateful :class:`MemberSlice` (a Dask Actor) per worker.

The ensemble is cut into contiguous slices, one per worker (members ``0..n0-1`` on the first, and so on).
Each worker receives its slice once, pickled in one payload (the members share one terrain object, so
the terrain travels once per worker, never per step), and keeps it: the members are advanced there, in
parallel across workers, between analyses. What travels per cycle:

* the forcing the driver decides (a rain field once per worker with the per-member multipliers; held
  tide/inflow values; the model-error factors drawn in the driver from the same seeded generator);
* for the analysis, only the members' depths on the localisation box (``(K, by, bx)``, the box around
  the gauges) go to the driver, and the analysed windows go back; volume changes and dried-cell counts
  come back with them;
* for the model state, one partial sum per worker of depth and discharge (not one field per member).

The analysis itself (:meth:`EnsembleKalmanFilter.assimilate`) runs unchanged in the driver on the
gathered windows, and the write-back on the workers runs the same code as in process
(:func:`twin.assimilation.enkf.write_member_windows`): for the same members and seed the result is the
in-process one to round-off (the ensemble-mean sums are added in another order).
"""
from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from twin.assimilation.enkf import EnsembleKalmanFilter, write_member_windows

__all__ = ["DaskEnsembleKalmanFilter", "DaskMembers", "MemberSlice", "connect"]

Box = tuple[int, int, int, int]


def _box_slices(box: Box) -> tuple[slice, slice]:
    r0, r1, c0, c1 = box
    return slice(r0, r1 + 1), slice(c0, c1 + 1)


# What a member payload may name when it is unpickled on a worker: the twin's own classes, numpy and the
# geo types a Terrain holds, plain containers. Anything else (os, subprocess, builtins.eval, ...) is refused.
_PAYLOAD_MODULES = frozenset({"twin", "numpy", "affine", "pyproj", "collections", "copyreg", "datetime", "_codecs"})
_PAYLOAD_BUILTINS = frozenset({"set", "frozenset", "slice", "range", "complex", "bytearray", "bytes", "dict", "list",
                               "tuple", "int", "float", "str", "bool", "object"})


class _PayloadUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        root = module.split(".", 1)[0]
        if (module == "builtins" and name in _PAYLOAD_BUILTINS) or root in _PAYLOAD_MODULES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"MemberSlice payload: refusing {module}.{name} (a member payload holds only "
                                     f"twin models, numpy arrays and plain containers)")


def load_payload(payload: bytes) -> Any:
    """Unpickle a member payload with :class:`_PayloadUnpickler` (an allow-list of the classes members are
    made of). The payload is made by the driver from its in-memory models (:meth:`DaskMembers.from_models`)
    and travels only to the Dask workers the twin connects to; nothing from a run folder, a file or a
    client is unpickled. Dask's own protocol pickles too: a scheduler address must be a trusted cluster
    (the LocalCluster of ``scheduler: local`` binds 127.0.0.1)."""
    return _PayloadUnpickler(io.BytesIO(payload)).load()


class MemberSlice:
    """Members ``models`` of an ensemble, alive on one Dask worker (created there as an Actor).

    ``payload``: ``pickle.dumps((models, held))``; ``held[k]`` maps a forcing key to the one-value array
    member ``k``'s boundary or inflow series holds (pickled together, so the identity survives); read
    with :func:`load_payload` (an allow-list of classes)."""

    def __init__(self, payload: bytes) -> None:
        self.models, self.held = load_payload(payload)
        self._old: np.ndarray | None = None

    def time(self) -> float:
        return float(self.models[0].time)

    def advance(self, dt_s: float) -> float:
        for m in self.models:
            m.run_one_step(dt_s)
        return self.time()

    def scale_depth(self, factors: list[float]) -> None:
        """Model error: member ``k``'s depth times ``factors[k]``."""
        for m, f in zip(self.models, factors, strict=True):
            m.set_depth(m.depth * f)

    def set_rain(self, t_s: float, field: np.ndarray, multipliers: list[float]) -> None:
        for m, r in zip(self.models, multipliers, strict=True):
            m.set_rainfall(np.array([t_s]), field * r)

    def hold_stage(self, key: str, edge: str | None, cells: np.ndarray | None, t_s: float, stage: float) -> None:
        from twin.assimilation.held import hold_stage

        for m, held in zip(self.models, self.held):
            hold_stage(m, held, key, edge, cells, t_s, stage)

    def hold_inflow(self, key: str, cells: np.ndarray, t_s: float, q: float) -> None:
        from twin.assimilation.held import hold_inflow

        for m, held in zip(self.models, self.held):
            hold_inflow(m, held, key, cells, t_s, q)

    def read_windows(self, box: Box) -> np.ndarray:
        """The members' depths on ``box`` ``(n, by, bx)``; kept here as the prior of :meth:`write_windows`."""
        bsl = _box_slices(box)
        shape = (len(self.models), box[1] - box[0] + 1, box[3] - box[2] + 1)
        if self._old is None or self._old.shape != shape:
            self._old = np.empty(shape)
        for k, m in enumerate(self.models):
            m.depth_window(bsl, out=self._old[k])
        return self._old.copy()

    def write_windows(self, box: Box, new: np.ndarray) -> tuple[np.ndarray, int]:
        if self._old is None or self._old.shape != new.shape:
            raise RuntimeError(f"write_windows: no windows of shape {new.shape} were read on this worker")
        return write_member_windows(self.models, _box_slices(box), box, self._old, np.asarray(new))

    def sums(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Sums over this slice: ``"depth"`` and the solver-state arrays ``keys`` (e.g. qx, qy)."""
        out: dict[str, np.ndarray] = {"depth": np.zeros(self.models[0].shape)}
        for m in self.models:
            out["depth"] += np.asarray(m.depth, np.float64)
            if keys:
                ss = m.get_state()["solver_state"]
                for k in keys:
                    if k not in out:
                        out[k] = np.zeros_like(ss[k], dtype=np.float64)
                    out[k] += ss[k]
        return out

    def squared_deviation_sum(self, mean_depth: np.ndarray) -> np.ndarray:
        acc = np.zeros(mean_depth.shape)
        for m in self.models:
            acc += (np.asarray(m.depth, np.float64) - mean_depth) ** 2
        return acc


def connect(scheduler: str, workers: int | None = None, *, timeout_s: float = 10.0,
            where: str = "dask") -> tuple[Any, Any]:
    """A Dask client: ``scheduler="local"`` starts a LocalCluster of ``workers`` single-threaded worker
    processes (OMP_NUM_THREADS=1; returned as the second item, to close after the client), anything else
    is a scheduler address (``tcp://host:8786``). An unreachable scheduler is a ValueError naming it."""
    from dask.distributed import Client

    from twin.workflows.dask_local import local_cluster

    if scheduler == "local":
        cluster = local_cluster(workers or 2)
        try:
            return Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise
    try:
        client = Client(scheduler, timeout=timeout_s)
    except ValueError as exc:
        raise ValueError(f"{where}.scheduler: {scheduler!r} is not 'local' nor a Dask scheduler address "
                         f"(tcp://host:8786): {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"{where}.scheduler: cannot reach the Dask scheduler at {scheduler!r} within "
                         f"{timeout_s:g} s ({type(exc).__name__}: {exc})") from None
    return client, None


class DaskMembers:
    """Driver-side handle of ensemble members living on Dask workers (one :class:`MemberSlice` each).

    Make it with :meth:`from_models` (members built here, shipped once) or :meth:`copies` (copies of one
    model, made and shipped one worker's slice at a time). ``workers``: use at most this many of the
    client's workers (default: all; never more than the members)."""

    def __init__(self, client: Any, terrain: Any, addresses: Sequence[str], sizes: Sequence[int],
                 payload: Callable[[int], bytes], time_s: float) -> None:
        """Ship slice ``i`` (``sizes[i]`` members, pickled by ``payload(i)``, made when it is shipped) to
        worker ``addresses[i]``; use :meth:`from_models` or :meth:`copies`."""
        self.client = client
        self.terrain = terrain
        self.sizes = [int(n) for n in sizes]
        self.n_members = int(sum(self.sizes))
        self.bounds = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.addresses = list(addresses)
        self._futures: list[Any] = []
        self.actors: list[Any] = []
        try:
            for i, addr in enumerate(self.addresses):
                data = client.scatter(payload(i), workers=[addr], hash=False)
                fut = client.submit(MemberSlice, data, actor=True, workers=[addr], allow_other_workers=False,
                                    pure=False)
                self.actors.append(fut.result())
                self._futures.append(fut)
                data.release()
            times = self._all("time")
        except BaseException:
            self.close()
            raise
        if max(times) - min(times) > 1e-6 or abs(times[0] - time_s) > 1e-6:
            self.close()
            raise RuntimeError(f"DaskMembers: members on the workers are at times {times}, expected {time_s:g} s")
        self.time = float(times[0])

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _addresses(client: Any, n_members: int, workers: int | None) -> list[str]:
        addrs = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if not addrs:
            raise ValueError(f"dask: the scheduler {client.scheduler.address!r} has no workers")
        if workers is not None:
            if workers < 1:
                raise ValueError(f"dask.workers: expected an integer >= 1, got {workers!r}")
            addrs = addrs[:workers]
        return addrs[:n_members]

    @classmethod
    def from_models(cls, client: Any, models: Sequence[Any], *, held: Sequence[dict] | None = None,
                    workers: int | None = None) -> DaskMembers:
        models = list(models)
        if len(models) < 2:
            raise ValueError(f"models: an ensemble needs at least 2 members, got {len(models)}")
        helds = list(held) if held is not None else [{} for _ in models]
        addrs = cls._addresses(client, len(models), workers)
        parts = np.array_split(np.arange(len(models)), len(addrs))

        def payload(i: int) -> bytes:
            return pickle.dumps(([models[k] for k in parts[i]], [helds[k] for k in parts[i]]), protocol=5)

        return cls(client, models[0].terrain, addrs, [len(p) for p in parts], payload, float(models[0].time))

    @classmethod
    def copies(cls, client: Any, model: Any, n_members: int, *, held: dict | None = None,
               workers: int | None = None) -> DaskMembers:
        """``n_members`` deep copies of ``model`` (sharing its terrain); ``held``: the model's held forcing
        arrays (see :mod:`twin.sensors.assimilation`), relinked in each copy."""
        from twin.assimilation.held import relink_held

        if n_members < 2:
            raise ValueError(f"members: an ensemble needs at least 2 members, got {n_members}")
        addrs = cls._addresses(client, n_members, workers)
        parts = np.array_split(np.arange(n_members), len(addrs))

        def payload(i: int) -> bytes:
            memo = {id(model.terrain): model.terrain}
            ms = [copy.deepcopy(model, memo=dict(memo)) for _ in range(len(parts[i]))]
            hs: list[dict] = [{} for _ in ms]
            for m, h in zip(ms, hs):
                relink_held(model, m, held or {}, h)
            return pickle.dumps((ms, hs), protocol=5)

        # one slice's copies exist here at a time
        return cls(client, model.terrain, addrs, [len(p) for p in parts], payload, float(model.time))

    # ------------------------------------------------------------------ calls on every worker
    def _all(self, method: str, *args: Any) -> list[Any]:
        futs = [getattr(a, method)(*args) for a in self.actors]
        return [f.result() for f in futs]

    def _each(self, method: str, per_slice: Sequence[Any], *args: Any) -> list[Any]:
        futs = [getattr(a, method)(*args, p) for a, p in zip(self.actors, per_slice)]
        return [f.result() for f in futs]

    def _split(self, values: Sequence[Any] | np.ndarray) -> list[Any]:
        return [values[self.bounds[i]:self.bounds[i + 1]] for i in range(len(self.actors))]

    def advance(self, dt_s: float) -> float:
        times = self._all("advance", float(dt_s))
        if max(times) - min(times) > 1e-6:
            raise RuntimeError(f"DaskMembers.advance: workers report different times {times}")
        self.time = float(times[0])
        return self.time

    def scale_depth(self, factors: Sequence[float]) -> None:
        self._each("scale_depth", [list(map(float, f)) for f in self._split(list(factors))])

    def set_rain(self, t_s: float, field: np.ndarray, multipliers: Sequence[float] | np.ndarray) -> None:
        futs = [a.set_rain(float(t_s), field, [float(r) for r in m])
                for a, m in zip(self.actors, self._split(list(multipliers)))]
        for f in futs:
            f.result()

    def hold_stage(self, key: str, edge: str | None, cells: np.ndarray | None, t_s: float, stage: float) -> None:
        self._all("hold_stage", key, edge, cells, float(t_s), float(stage))

    def hold_inflow(self, key: str, cells: np.ndarray, t_s: float, q: float) -> None:
        self._all("hold_inflow", key, cells, float(t_s), float(q))

    def read_windows(self, box: Box, out: np.ndarray) -> None:
        for part, dst in zip(self._all("read_windows", tuple(int(b) for b in box)), self._split(out)):
            np.copyto(dst, part)

    def write_windows(self, box: Box, new: np.ndarray) -> tuple[np.ndarray, int]:
        b = tuple(int(v) for v in box)
        futs = [a.write_windows(b, part) for a, part in zip(self.actors, self._split(new))]
        res = [f.result() for f in futs]
        return np.concatenate([np.asarray(r[0], np.float64) for r in res]), int(sum(r[1] for r in res))

    def sums(self, keys: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Sums over all members of ``"depth"`` and the solver-state arrays ``keys``."""
        parts = self._all("sums", list(keys))
        out = {k: np.array(v, dtype=np.float64) for k, v in parts[0].items()}
        for p in parts[1:]:
            for k in out:
                out[k] += p[k]
        return out

    def squared_deviation_sum(self, mean_depth: np.ndarray) -> np.ndarray:
        parts = self._all("squared_deviation_sum", mean_depth)
        return np.sum(parts, axis=0)

    def close(self) -> None:
        """Release the actors (the client and its cluster belong to the caller)."""
        self.actors = []
        for f in self._futures:
            f.release()
        self._futures = []


class DaskEnsembleKalmanFilter(EnsembleKalmanFilter):
    """:class:`EnsembleKalmanFilter` over members on Dask workers (:class:`DaskMembers`): the same analysis,
    run here on the localisation windows gathered from the workers; ``advance`` runs the slices in
    parallel. Augmented parameters need the members in this process (not offered here)."""

    def __init__(self, members: DaskMembers, obs_error_m: float = 0.05, localization_m: float = 2000.0,
                 inflation: float = 1.0, seed: int | np.random.SeedSequence | None = 0, *,
                 method: str = "ensrf") -> None:
        if not isinstance(members, DaskMembers):
            raise ValueError(f"members: expected a DaskMembers, got {type(members).__name__}")
        self.members = members
        self._setup(members.terrain, members.n_members, obs_error_m, localization_m, inflation, seed, method,
                    None, None, None)

    @property
    def models(self) -> list:  # type: ignore[override]
        raise AttributeError("DaskEnsembleKalmanFilter: the members live on Dask workers, not in this process; "
                             "use .members (DaskMembers)")

    @property
    def time(self) -> float:
        return float(self.members.time)

    def advance(self, dt_s: float) -> None:
        """Run every member ``dt_s`` seconds (each worker its slice, the workers in parallel)."""
        self.members.advance(dt_s)

    def mean(self, name: str = "depth") -> np.ndarray:
        if name not in ("depth", "stage"):
            raise ValueError(f"field: expected 'depth' or 'stage', got {name!r}")
        h = self.members.sums()["depth"] / self.n_members
        return h if name == "depth" else np.where(self._valid, self._z + h, np.nan)

    def spread(self, name: str = "depth") -> np.ndarray:
        if name not in ("depth", "stage"):
            raise ValueError(f"field: expected 'depth' or 'stage', got {name!r}")
        mu = self.members.sums()["depth"] / self.n_members
        s = np.sqrt(self.members.squared_deviation_sum(mu) / (self.n_members - 1))
        return s if name == "depth" else np.where(self._valid, s, np.nan)

    def _read_windows(self, bsl: tuple[slice, slice], out: np.ndarray) -> None:
        self.members.read_windows((bsl[0].start, bsl[0].stop - 1, bsl[1].start, bsl[1].stop - 1), out)

    def _write_windows(self, bsl: tuple[slice, slice], box: tuple[int, int, int, int], old: np.ndarray,
                       new: np.ndarray) -> tuple[np.ndarray, int]:
        return self.members.write_windows(box, new)

    def close(self) -> None:
        self.members.close()

