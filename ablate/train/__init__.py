"""Training: per-worker loop (loop.py), per-trial driver (driver.py), grid launch (launch.py)."""
