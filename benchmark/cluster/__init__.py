"""Layer 1: Ray. Joining a cluster (token and storage checks, resources, where a trial ran) and a multi-node
cluster on one machine for tests and perf.
"""

from benchmark.cluster.local import RayCluster
from benchmark.cluster.ray_cluster import check_resources, check_storage_shared, fitting_trials, init_ray, where_am_i

__all__ = ["check_resources", "check_storage_shared", "fitting_trials", "init_ray", "where_am_i", "RayCluster"]
