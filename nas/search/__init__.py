"""The search runtime: reward, driver, child runner, run log, and the one module that meets Ray."""
