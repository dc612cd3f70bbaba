"""Experiments over many runs: parameter sweeps, HTML reports, game-theoretic analysis."""
