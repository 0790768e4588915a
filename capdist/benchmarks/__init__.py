"""Studies on top of the engine: the side-by-side study, run comparison, re-timing of many runs,
the compactor-core and data-pipeline suites (measurement itself lives in :mod:`capdist.measure`)."""
