"""Hydra entrypoints, pipeline assembly, sources, sinks and the run report."""
