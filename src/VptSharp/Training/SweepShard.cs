using VptSharp.Data;

namespace VptSharp.Training;

/// <summary>
/// "i/n": this machine runs the (task, method) pairs whose stable hash % n == i, so a sweep spreads over machines and
/// each pair's runs (grid, selection, seeds) stay on one of them.
/// </summary>
public readonly record struct SweepShard(int Index, int Count)
{
    public static readonly SweepShard All = new(0, 1);

    /// <summary>The shard named by "i/n" (null = all pairs).</summary>
    public static SweepShard Parse(string? text)
    {
        if (text is null) return All;
        var parts = text.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int index) || !int.TryParse(parts[1], out int count) || count < 1 || index < 0 || index >= count)
            throw new InvalidSettingException("shard", text, "expected i/n with 0 ≤ i < n, e.g. 0/4");
        return new SweepShard(index, count);
    }

    /// <summary>Whether this shard runs <paramref name="method"/> on <paramref name="task"/> (same answer in every process).</summary>
    public bool Contains(string task, string method) => StableSeed.Of([.. (task + "/" + method).Select(c => (long)c)]) % Count == Index;
}
