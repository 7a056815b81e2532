using System.Runtime.InteropServices;

namespace VptSharp.Hardware;

/// <summary>
/// glibc's allocator settings for a process that runs libtorch on the CPU. By default glibc serves every block above a
/// dynamic threshold (at most 32 MiB) with a fresh mmap and returns it on free, so each forward pass of a ConvNet at 224 px
/// page-faults its activations in again: `vpt eval` of ResNet-18 on 1,000 images took 3.3 M minor faults and 26 s of
/// system time in 43 s. Keeping freed memory in the heap (mmap threshold 32 MiB, no trimming below 1 GiB of free top)
/// and 16-image forward batches (<see cref="Tuning.Evaluation"/>) made it 81 images/s instead of 25. The price: the
/// process keeps its peak heap. Apps call this once at start-up (the `vpt` tool does); a library must not decide it.
/// </summary>
public static class NativeHeap
{
    const int M_TRIM_THRESHOLD = -1, M_TOP_PAD = -2, M_MMAP_THRESHOLD = -3;

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int Mallopt(int param, int value);

    /// <summary>Applies the settings on Linux with glibc; elsewhere (or when GLIBC_TUNABLES already sets malloc) does
    /// nothing. Returns whether they were applied.</summary>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux() || (Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? "").Contains("malloc")) return false;
        try
        {
            return Mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
                & Mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
                & Mallopt(M_TOP_PAD, 64 << 20) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; } // musl, no glibc
    }
}
