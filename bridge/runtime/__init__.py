"""Generic process plumbing the rest builds on, with no knowledge of claims: logging with
redaction of patient data, helper processes, listening sockets, pausing the garbage collector,
group commit. The lowest layer: it imports nothing else of the bridge (the sandbox may use it).
"""

__all__ = [
    "childproc",
    "gcpause",
    "group_sync",
    "listen",
    "logs",
    "redaction",
]
