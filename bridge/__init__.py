"""bkm-bridge: legacy BKM XML claims in, KUHR Krav API out."""

__version__ = "0.2.0"
