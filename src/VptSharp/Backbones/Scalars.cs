using TorchSharp;

namespace VptSharp.Backbones;

/// <summary>
/// Scalars held for the process's lifetime, for hot-path adds. TorchSharp's <c>a + b</c> and <c>a.add(b)</c> convert the
/// alpha 1 to a Scalar implicitly and pass only its handle to libtorch; the GC may finalize that Scalar while libtorch still
/// reads it (seen as "Expected false to be true" from Scalar::toFloat inside at::add, and "Unknown scalar type").
/// Write <c>a.add(b, Scalars.One)</c> instead.
/// </summary>
internal static class Scalars
{
    public static readonly Scalar One = 1.ToScalar();
}
