"""Training the product's own models: datasets, recipes, evaluation, reports, registration.

`xrserve train <recipe>` runs one recipe end to end (see docs/training.md). Nothing here is
imported by the server: the trained weights are served by `xrserve.models.trained`.
"""
