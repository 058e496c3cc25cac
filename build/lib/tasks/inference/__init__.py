"""Inference: the recognizer, its runtime and decoding, the bundle, export, batch predict."""
