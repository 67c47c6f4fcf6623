"""The SB3 layer: algorithms and their shipped hyperparameters, the adapters of the levers, the actor-critic
whose critic reads what the actor may not, and VecNormalize statistics as plain JSON."""
