"""From data to trained models in one run folder (``effnas pipeline``): the search, the
scaling, the training of the family and the report, above the jobs it calls.

``settings`` (what to run), ``state`` (``pipeline.json``), ``run`` (the stages, resumable),
``report`` (the tables and the figure over the trained models).
"""
