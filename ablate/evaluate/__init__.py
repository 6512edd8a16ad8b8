"""Evaluation of reconstructions: vessel morphology (AutoMorph-style features) and agreement."""
