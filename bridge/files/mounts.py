"""Is a folder on a local disk or on a network share? The intake decides by it how it knows a
file is completely written: on a local disk the OS says when the writer closes the file (Linux)
or lets the bridge open it exclusively once it is done (Windows); a share mounted from another
machine reports neither reliably, so there the size and mtime must stay still for a while.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

# Filesystem types (Linux /proc/self/mountinfo) whose files are written by other machines.
NETWORK_TYPES = frozenset(
    {
        "cifs",
        "smb3",
        "smbfs",
        "nfs",
        "nfs4",
        "ncpfs",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "9p",
        "davfs",
        "fuse.sshfs",
        "fuse.rclone",
        "fuse.glusterfs",
        "fuse.ceph",
        "fuse.s3fs",
        "fuse.gvfsd-fuse",
    }
)


@dataclass(frozen=True, slots=True)
class Filesystem:
    kind: str  # "ext4", "cifs", "remote drive" …, or "unknown"
    network: bool


def filesystem_of(folder: str | os.PathLike[str]) -> Filesystem:
    """The filesystem `folder` lives on (symlinks resolved). Unknown counts as local."""
    path = os.path.realpath(folder)
    if sys.platform == "win32":
        return _windows_filesystem(path)
    if sys.platform.startswith("linux"):
        kind = _linux_type(path)
        if kind is not None:
            return Filesystem(kind, kind in NETWORK_TYPES)
    return Filesystem("unknown", False)


def _linux_type(path: str) -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            return mount_type(path, handle.read().splitlines())
    except OSError:
        return None


def mount_type(path: str, lines: list[str]) -> str | None:
    """From mountinfo's lines: the type of the mount whose mount point is the longest prefix
    of `path` (absolute, symlinks resolved)."""
    best, best_type = -1, None
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount_point = _unescape(parts[4])
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= best:  # later mounts hide earlier ones at one point
            best, best_type = len(mount_point), rest.split()[0]
    return best_type


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _windows_filesystem(path: str) -> Filesystem:
    unc = path.startswith(("\\\\", "//")) and not path.startswith(("\\\\?\\", "\\\\.\\"))
    if unc or path.upper().startswith("\\\\?\\UNC\\"):
        return Filesystem("network share (UNC)", True)
    import ctypes

    drive = os.path.splitdrive(path)[0]
    if not drive:
        return Filesystem("unknown", False)
    kind = ctypes.windll.kernel32.GetDriveTypeW(drive + "\\")
    if kind == 4:  # DRIVE_REMOTE: a mapped network drive
        return Filesystem("remote drive", True)
    return Filesystem("local drive", False)
