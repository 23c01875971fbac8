"""The architecture model: specs, units, block strings, rounding, the cost model, spec files
and the builder. Only :mod:`nas.arch.builder` imports torch."""
