"""Layer 3: MLflow. The tracker every stage logs through (checked URIs, retries on a locked store) and the
saved views of the UI.
"""

from benchmark.tracking.store import Tracker, check_reachable, check_tracking_uri, default_tracking_uri, flatten_metrics
from benchmark.tracking.views import save_views

__all__ = ["Tracker", "check_reachable", "check_tracking_uri", "default_tracking_uri", "flatten_metrics", "save_views"]
