"""The long-running bridge: folder intake (`watcher`), the runner behind `watch`, the Windows
service and systemd (`runner`, `service`, `winservice`, `systemd`), and what operators see
(`health`, `metrics`, `status_page`); `preflight`: can this setup run (`config check`).
"""

__all__ = [
    "health",
    "metrics",
    "preflight",
    "runner",
    "service",
    "status_page",
    "systemd",
    "watcher",
    "winservice",
]
