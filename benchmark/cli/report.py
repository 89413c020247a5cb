"""`python -m benchmark report`: leaderboards and figures from MLflow."""

from __future__ import annotations

from benchmark.core.errors import ConfigError
from benchmark.report.generate import generate_report
from benchmark.tracking.store import default_tracking_uri


def cmd_report(args) -> int:
    if args.practical_difference is not None and not 0 <= args.practical_difference < 1:
        raise ConfigError(f"--practical-difference must lie in [0, 1), got {args.practical_difference}")
    written = generate_report(
        args.tracking_uri or default_tracking_uri(),
        experiments=args.experiment,
        out=args.out,
        practical_difference=args.practical_difference,
    )
    print(f"wrote {written['markdown']} and {written['html']} with {len(written) - 2} figure(s)")
    return 0
