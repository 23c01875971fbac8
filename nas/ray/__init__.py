"""Where the project meets Ray: the only package that imports it.

``runtime`` starts, joins and stops Ray and keeps its logging off the terminal;
``leftovers`` stops what a killed run left of its local Ray; ``searcher`` runs a driver's
children as Ray Tune trials (the Searcher bridge and the trainable); ``tune_options`` builds
what a user adds to Tune (callbacks, the ASHA scheduler); ``train`` trains the one-shot
search's supernet as a Ray Train job; ``latency`` builds a device's latency table on the
cluster node that has the device's resource.

The adapters know nothing of the search: they are handed a driver (anything with
``suggest``, ``complete``, ``save`` and ``restore``, see :class:`nas.ray.searcher.Driver`),
plain settings and a scoring function, so :mod:`nas.search` stands on them, not beside them.
"""
