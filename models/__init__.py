"""Torch modules, their training loops and the versioned model registry."""
