"""The filesystem shell: reading a claim file with a limit (`reading`), finding files in
folders and zips (`batch`, `discovery`, `sources`), atomic writes and locks (`fsutil`), where
receipts go and writing them (`receipts`), the takst cache on disk (`takstcache`), and whether
a folder is on a local disk or a network share (`mounts`).
"""

__all__ = [
    "batch",
    "discovery",
    "fsutil",
    "mounts",
    "reading",
    "receipts",
    "sources",
    "takstcache",
]
