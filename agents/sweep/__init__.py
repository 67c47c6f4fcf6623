"""Sweeps of training runs on Ray: the sweep file (``agents.sweep.config``) and running it (``agents.sweep.run``)."""
