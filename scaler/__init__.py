"""Compound scaling (EfficientNet section 3.3): the coefficient grid, the family, the reports.

Pure Python: neither torch nor Ray is imported here. The grid's trials are trained on Ray
by :mod:`nas.scaling.grid`, which takes :func:`distinct_candidates` as its trial list and
hands the results to :func:`select_best` and :func:`write_scaling`.
"""

from __future__ import annotations

from scaler.compound import (
                             METHOD_COMPOUND,
                             METHOD_DEPTH_KEPT,
                             METHOD_DEPTH_NEAREST,
                             METHOD_WIDTH_KEPT,
                             PAPER_COEFFICIENTS,
                             RESOLUTION_ROUNDING,
                             Coefficients,
                             GridConfig,
                             GridPoint,
                             GridResult,
                             distinct_candidates,
                             grid_candidates,
                             proxy_resolution,
                             scale_candidate,
                             scaled_resolution,
                             select_best,
                             summarize,
)
from scaler.family import (
                             DEFAULT_NAMES,
                             EFFICIENTNET,
                             PHI_MAX,
                             PHI_MIN,
                             RULES,
                             TOLERANCE,
                             LATENCY_TOLERANCE,
                             MACS,
                             Cost,
                             FamilyMember,
                             Published,
                             Solution,
                             fit_budget,
                             fit_budgets,
                             fit_latency_budgets,
                             make_family,
                             solve_budget,
                             solve_phi,
)
from scaler.report import (
                             FamilyFiles,
                             ScalingRecord,
                             load_scaling,
                             save_scaling,
                             write_family,
                             write_scaling,
)

__all__ = [
    "Coefficients", "PAPER_COEFFICIENTS", "METHOD_COMPOUND", "METHOD_DEPTH_KEPT",
    "METHOD_WIDTH_KEPT", "METHOD_DEPTH_NEAREST", "GridConfig", "GridPoint", "GridResult",
    "RESOLUTION_ROUNDING", "grid_candidates", "scale_candidate", "scaled_resolution",
    "proxy_resolution", "distinct_candidates", "select_best", "summarize",
    "RULES", "DEFAULT_NAMES", "TOLERANCE", "PHI_MIN", "PHI_MAX", "EFFICIENTNET", "Published",
    "FamilyMember", "Solution", "make_family", "fit_budget", "fit_budgets", "solve_phi",
    "solve_budget", "Cost", "MACS", "LATENCY_TOLERANCE", "fit_latency_budgets", "FamilyFiles", "ScalingRecord", "write_family", "write_scaling",
    "save_scaling", "load_scaling",
]
