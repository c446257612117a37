"""`cnndsl train`: settings, data, the fit loop, the run folder, distribution, plots."""
