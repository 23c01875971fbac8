"""Proxy fidelity: how well a proxy ranks a search's children against longer training
(``effnas fidelity``). ``settings`` (what to train), ``run`` (pick the networks, train them
on Ray), ``report`` (the rank correlations and the files)."""
