using VptSharp.Hardware;
using VptSharp.Tuning;

namespace VptSharp.Tests;

/// <summary>The CPU-throughput settings `vpt` applies: glibc keeps freed activations (mallopt through P/Invoke must
/// bind on this Debian), and frozen forward passes at ≥ 128 px go 16 images at a time.</summary>
public class NativeHeapTests
{
    [Fact]
    public void GlibcAcceptsTheHeapSettings()
    {
        // The suite runs on Debian (glibc); GLIBC_TUNABLES setting malloc would make it stand aside on purpose.
        Assert.Equal(!(Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? "").Contains("malloc"), NativeHeap.KeepFreedMemory());
    }

    [Theory]
    [InlineData(64, 224, 16)]
    [InlineData(1024, 128, 16)]
    [InlineData(8, 224, 8)]
    [InlineData(64, 32, 64)]
    [InlineData(1024, 112, 1024)]
    public void LargeImagesAreForwardedSixteenAtATime(int batch, int imageSize, int expected) =>
        Assert.Equal(expected, Evaluation.ForwardBatch(batch, imageSize));
}
