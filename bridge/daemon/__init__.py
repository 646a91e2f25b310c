"""The long-running bridge: folder intake (`watcher`), the takst tables kept fresh
(`takster_refresh`), the runner behind `watch`, the Windows
service and systemd (`runner`, `service`, `winservice`, `systemd`), and what operators see
(`health`, `metrics`, `status_page`) and hear (`notify`); `preflight`: can this setup run
(`config check`).
"""

__all__ = [
    "health",
    "metrics",
    "notify",
    "preflight",
    "runner",
    "service",
    "status_page",
    "systemd",
    "takster_refresh",
    "watcher",
    "winservice",
]
