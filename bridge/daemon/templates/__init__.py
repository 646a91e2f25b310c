"""The status page template (bridge/daemon/status_page.py), shipped as package data."""
