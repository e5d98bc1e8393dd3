"""Orders' reads: ``orders`` (the buyer's orders) and ``reports`` (sales reports of an agent's
subtree)."""
