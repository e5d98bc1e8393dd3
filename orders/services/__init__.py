"""Orders' writes: ``orders`` (place, pay, fulfil, cancel, reveal, replace: the order machine) and
``callbacks`` (signed "delivered" callbacks to agents' shops)."""
