"""Benchmarks, load and chaos tests, and local servers speaking the channel APIs."""
