"""Weight sharing: one supernet holds every path of a search space (TuNAS/SPOS style).

``plan`` (torch-free) works out the slots; ``model`` is the supernet, interpreted like the
builder, with ``subnet(tokens)`` exporting a path as a standalone network; ``score`` scores
paths (three batch-norm modes); ``train`` trains the shared weights through the training
engine with paths a strategy samples, and the strategy on validation batches of those paths.
Nothing here imports Ray: the Ray Train adapter is :mod:`nas.ray.train`.
"""
