"""Reports on a run: Pareto fronts (pareto), the trials behind them (points), table, PNG plot, HTML page."""
