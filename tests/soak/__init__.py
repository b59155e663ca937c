"""Soak, fault and fuzz scenarios, bounded (the full runs are in bench/soak.py)."""
