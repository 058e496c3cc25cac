"""Training: detector, crop classifier, their configs, profiles, weights, architectures."""
