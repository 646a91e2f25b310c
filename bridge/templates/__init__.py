"""The status page template (bridge/status_page.py), shipped as package data."""
