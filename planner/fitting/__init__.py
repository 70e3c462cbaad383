"""Fitters of law parameters to observed runs (VPNLS, Huber multistart)."""
