"""Silver-layer rules: column naming, type inference and the cleaning plan.

Public interface:

- ``snake_case_names(names) -> list[str]``: unique, collision-safe snake_case names.
- ``infer_plan(parquet_path, *, null_tokens, settings=None) -> SilverPlan``: decides each
  column's silver name and type from **all** values of the local Parquet file.
- ``SilverPlan`` / ``SilverColumn``: the plan every lakehouse target applies.
"""
from service.transform.naming import snake_case_names
from service.transform.plan import SilverColumn, SilverPlan, infer_plan

__all__ = ["SilverColumn", "SilverPlan", "infer_plan", "snake_case_names"]
