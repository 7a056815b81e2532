// Torch's random generator is process-global: tests that seed it must not interleave.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
