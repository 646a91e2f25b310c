"""One file version through the journal: the journal (`journal`) and its typed record
(`records`), the pipeline's steps (`pipeline`, with `options`), reconciliation with KUHR
(`reconcile`), why a version stands where it does (`reasons`), receipt delivery (`delivery`),
the pre-control step (`precheck`), the sweep of KUHR's overview for claims already final
(`sweep`), and the one place that builds these parts from the settings (`assembly`).
"""

__all__ = [
    "assembly",
    "delivery",
    "journal",
    "options",
    "pipeline",
    "precheck",
    "reasons",
    "reconcile",
    "records",
    "sweep",
]
