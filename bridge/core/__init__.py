"""The functional core: bytes → claim or problems (`convert`), claim → findings (`precheck`),
claim → the documented code lists and rules it breaks (`rules`),
facts → receipt data and AppRec bytes (`receipts`, `apprec`), sentences for staff about trouble
that is not the claim's fault (`notices`). No I/O: no file, network, clock
or settings is read here; everything is handed in. (The one exception is the data shipped
with the package – schemas, mapping tables, code lists – read once, lazily.)
"""

__all__ = [
    "apprec",
    "convert",
    "legacy",
    "mapping",
    "model",
    "notices",
    "outcomes",
    "praksis",
    "precheck",
    "problems",
    "receipts",
    "rules",
    "takster",
    "timezone",
]
