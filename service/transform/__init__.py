"""Silver-layer rules: column naming, type inference and the cleaning plan.

Public interface:

- ``snake_case_names(names) -> list[str]``: unique, collision-safe snake_case names.
- ``infer_plan(parquet_path, *, null_tokens, settings=None, sampled=False) -> SilverPlan``:
  decides each column's silver name and type from **all** values of the local Parquet
  file; with ``sampled=True`` typed columns are decided from a sample and the plan is
  marked unverified, for a writer that checks every value as it applies the plan.
- ``SilverPlan`` / ``SilverColumn``: the plan every lakehouse target applies.
"""

from service.transform.inference import infer_plan
from service.transform.naming import snake_case_names
from service.transform.plan import SampledPlanRejected, SilverColumn, SilverPlan

__all__ = ["SampledPlanRejected", "SilverColumn", "SilverPlan", "infer_plan", "snake_case_names"]
