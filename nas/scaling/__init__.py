"""Compound scaling on Ray: the coefficient grid and the single-dimension comparison
(``grid``), trained as fixed lists of candidates the way the search trains its children.
The scaling rules themselves are :mod:`scaler` (pure Python); the command is
:mod:`nas.cli.scale`.
"""
