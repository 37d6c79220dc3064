"""Helpers shared by the tests: local replicas of the official sources, stage command lines,
a temp copy of the repository, the GPU skip, a slow reference of Epsilon's equations."""
