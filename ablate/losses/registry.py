"""The loss-term registry: every term a search space may name."""

from ablate.registry import Registry

LOSSES = Registry("loss term")
