"""Composition roots: YAML network specs (validated), the link planner, plots; later, specs built
into running networks (simulated or live).
"""
