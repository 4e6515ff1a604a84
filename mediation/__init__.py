"""mediation: an ad-mediation event pipeline.

The package holds what every service shares: settings, the CLI, the local
dev stack, the demo and simulator, and ``mediation.rules`` (the pure domain
rules that the dataflow and replay both call).
"""

__version__ = "0.1.0"
