"""The filesystem shell: reading a claim file with a limit (`reading`), finding files in
folders and zips (`batch`, `discovery`, `sources`), atomic writes and locks (`fsutil`), where
receipts go and writing them (`receipts`), the takst cache on disk (`takstcache`).
"""

__all__ = [
    "batch",
    "discovery",
    "fsutil",
    "reading",
    "receipts",
    "sources",
    "takstcache",
]
