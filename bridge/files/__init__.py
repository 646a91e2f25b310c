"""The filesystem shell: reading a claim file with a limit (`reading`), finding files in
folders and zips (`batch`, `discovery`, `sources`), atomic writes and locks (`fsutil`), where
receipts go and writing them (`receipts`), the takst cache on disk (`takstcache`), and whether
a folder is on a local disk or a network share (`mounts`), and whether a folder is a
production folder no sandbox AppRec may reach (`production`).
"""

__all__ = [
    "batch",
    "discovery",
    "fsutil",
    "mounts",
    "production",
    "reading",
    "receipts",
    "sources",
    "takstcache",
]
