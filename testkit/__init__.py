"""What tests and benchmarks share: the servers they start and the fault campaign."""
