"""Shipped data: installed as a package so importlib.resources finds it (bridge/paths.py)."""
