"""The network layer: the only place that talks to the network."""
