"""Backends: the PyTorch and JAX ways of turning a model into parameters and an evaluator."""
