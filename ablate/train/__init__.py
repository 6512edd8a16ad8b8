"""The ablation grid: per-worker loop (loop.py), per-trial driver (driver.py), the grid's
checks and table (grid.py), the experiment folder's record (experiment.py), the Tune
launch (launch.py). `ablate.pipeline` runs evaluation and the report after it."""
