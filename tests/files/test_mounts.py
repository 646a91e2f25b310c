"""Which folders count as network shares (their files keep the quiet period)."""

from __future__ import annotations

from pathlib import Path

from bridge.files.mounts import NETWORK_TYPES, filesystem_of, mount_type

MOUNTINFO = [
    "22 27 0:21 / /proc rw,relatime - proc proc rw",
    "27 1 253:0 / / rw,relatime - ext4 /dev/vda rw",
    "40 27 0:45 / /mnt/epj rw,relatime - cifs //srv/epj rw,vers=3.1.1",
    "41 40 0:46 / /mnt/epj/lokal rw,relatime - tmpfs tmpfs rw",
    r"42 27 0:47 / /mnt/EPJ\040Krav rw,relatime - nfs4 srv:/krav rw",
]


def test_the_longest_mount_point_decides() -> None:
    assert mount_type("/home/klinikk/inn", MOUNTINFO) == "ext4"
    assert mount_type("/mnt/epj", MOUNTINFO) == "cifs"
    assert mount_type("/mnt/epj/inn", MOUNTINFO) == "cifs"
    assert mount_type("/mnt/epj/lokal/inn", MOUNTINFO) == "tmpfs"
    assert mount_type("/mnt/epjx", MOUNTINFO) == "ext4"  # a prefix of the name is not inside
    assert mount_type("/mnt/EPJ Krav/inn", MOUNTINFO) == "nfs4"
    assert {"cifs", "smb3", "nfs", "nfs4"} <= NETWORK_TYPES


def test_a_temporary_folder_here_is_local(tmp_path: Path) -> None:
    assert not filesystem_of(tmp_path).network
