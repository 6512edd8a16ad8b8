"""The shipped search spaces (`ablate launch --grid NAME`), installed with the package
and read through importlib.resources, so a wheel install runs them like a checkout.
The top-level `search_spaces/` of the repository is a link to this folder."""
