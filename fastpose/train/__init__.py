"""Training loops (one module per model) and the infrastructure they share (:mod:`.common`)."""
