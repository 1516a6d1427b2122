"""Ray, imported only when a pool needs it: the import guard, starting or joining a cluster,
and per-worker resource requests.

``import evomerge`` never reaches this module. A local instance binds to 127.0.0.1 (Ray's
switch for single-machine clusters, which must be set before ray is first imported), runs no
dashboard and no auth, and runs its workers at normal priority (Ray lowers them to nice 15,
which on a shared machine starves the evaluations); ``address`` joins an existing cluster.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from evomerge.errors import ConfigError

_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # "0": node addresses resolve to 127.0.0.1


def import_ray(local: bool = True) -> ModuleType:
    """The ray module, or a one-line ConfigError when it is not installed."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    before = os.environ.get(_LOCAL_ONLY)
    if local and "ray" not in sys.modules and before is None:
        os.environ[_LOCAL_ONLY] = "0"        # read once, when ray is imported
    try:
        import ray
    except ImportError as err:
        raise ConfigError(f"workers: the Ray pool needs the ray package ({err}); pip install 'ray>=2.9'") from None
    finally:
        if before is None:                   # child processes (e.g. `ray start`) must not inherit it
            os.environ.pop(_LOCAL_ONLY, None)
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> tuple[ModuleType, bool]:
    """Ray ready to use: (ray, whether this call started it, so the caller shuts it down)."""
    ray = import_ray(local=address is None)
    if ray.is_initialized():
        return ray, False
    error: Exception | None = None
    for _ in range(2 if address is None else 1):   # a local node gets 30 s to start: a loaded
        try:                                          # machine may need a second try
            if address is None:
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                         _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="warning",
                         _system_config={"worker_niceness": 0})    # Ray's default 15 starves them
            else:
                ray.init(address=address, log_to_driver=False, logging_level="warning")
            return ray, True
        except Exception as err:  # noqa: BLE001 - Ray raises bare Exceptions here
            ray.shutdown()
            error = err
    where = f"--address {address}" if address else "local Ray instance"
    raise ConfigError(f"{where}: cannot start or join Ray ({str(error).splitlines()[0]})")


@dataclass(frozen=True)
class WorkerResources:
    """What one actor asks Ray for; ``custom`` pins actors to nodes that offer those resources."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.custom:
            opts["resources"] = dict(self.custom)
        return opts


def per_worker(resources: Any, workers: int) -> list[WorkerResources]:
    """One request per worker from the experiment's ``resources`` (or None for defaults).

    ``custom`` may be one mapping for every worker or a list cycled over workers (worker i gets
    ``custom[i % len]``), which is how workers are spread over named nodes. A WorkerResources
    (or a list of them, cycled) is taken as it is.
    """
    if isinstance(resources, WorkerResources) or isinstance(resources, list):
        table = resources if isinstance(resources, list) else [resources]
        return [table[i % len(table)] for i in range(workers)]
    cpus = float(getattr(resources, "cpus_per_worker", 1.0))
    gpus = float(getattr(resources, "gpus_per_worker", 0.0))
    custom = getattr(resources, "custom", None) or {}
    table = custom if isinstance(custom, list) else [custom]
    return [WorkerResources(cpus, gpus, dict(table[i % len(table)] or {})) for i in range(workers)]


def check_feasible(ray: ModuleType, requests: list[WorkerResources]) -> None:
    """Refuse requests the cluster cannot meet all at once (Ray would leave actors waiting forever)."""
    total, asked = ray.cluster_resources(), {}
    for req in requests:
        for name, amount in {"CPU": req.num_cpus, "GPU": req.num_gpus, **req.custom}.items():
            asked[name] = asked.get(name, 0.0) + amount
    for name, amount in asked.items():
        if amount > 0 and total.get(name, 0.0) + 1e-9 < amount:
            field_name = {"CPU": "cpus_per_worker", "GPU": "gpus_per_worker"}.get(name, f"custom.{name}")
            raise ConfigError(f"resources.{field_name}: {len(requests)} workers ask for {amount:g} {name} in all, "
                              f"the Ray cluster has {total.get(name, 0.0):g} (fewer workers, smaller shares, "
                              f"or resources.local_cpus for a local instance)")
