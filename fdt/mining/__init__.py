"""Important-state mining: cells, the games' allowed-step detectors, returns and ranking, the stage
and its images."""
