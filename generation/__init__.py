"""Engines, model resolution, the generation actor and recipes."""
