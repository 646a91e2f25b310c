"""The legacy XML: reading it safely (`read`), the XSD registry by target namespace
(`schemas`), explaining schema errors in words (`explain`), its namespaces, and writing it
(`writer`, for tests and benchmarks).
"""

__all__ = [
    "explain",
    "namespaces",
    "read",
    "schemas",
    "writer",
]
