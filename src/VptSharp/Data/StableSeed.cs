namespace VptSharp.Data;

/// <summary>
/// Seeds derived from several integers, identical in every process. (.NET's HashCode is randomised per process, so
/// it must not be used where a resumed or repeated run has to see the same shuffles and augmentations.)
/// </summary>
public static class StableSeed
{
    public static int Of(params long[] parts)
    {
        ulong h = 0x9E3779B97F4A7C15UL;
        foreach (long p in parts)
        {
            h ^= (ulong)p + 0x9E3779B97F4A7C15UL + (h << 6) + (h >> 2);
            h = Mix(h);
        }
        return (int)(h & 0x7FFFFFFF);
    }

    /// <summary>SplitMix64's finaliser.</summary>
    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
