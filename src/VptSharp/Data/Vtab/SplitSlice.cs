using System.Globalization;
using System.Text.RegularExpressions;

namespace VptSharp.Data.Vtab;

/// <summary>One part of a TFDS split string: examples [Start, End) of a source split, in the order TFDS reads them.</summary>
public sealed record SplitSlice(string Split, int Start, int End)
{
    public int Count => End - Start;

    /// <summary>
    /// Parses TFDS split strings as VTAB writes them ("train[:800]", "train[45000:45200]", "test[50%:]",
    /// "train[:800]+validation[:200]") against the source splits' sizes. Percent bounds round to the closest example
    /// (ties to even), negative bounds count from the end — TFDS's rules.
    /// </summary>
    public static IReadOnlyList<SplitSlice> Parse(string spec, IReadOnlyDictionary<string, int> sizes)
    {
        var parts = new List<SplitSlice>();
        foreach (var part in spec.Split('+', StringSplitOptions.TrimEntries))
        {
            var m = Regex.Match(part, @"^([a-z_0-9]+)(?:\[([^:\]]*):([^\]]*)\])?$");
            if (!m.Success) throw new ArgumentException($"split '{part}' is not of the form name or name[a:b]");
            string name = m.Groups[1].Value;
            if (!sizes.TryGetValue(name, out int n))
                throw new InvalidDataException($"the source has no '{name}' split (it has: {string.Join(", ", sizes.Keys)})");
            int start = m.Groups[2].Success ? Bound(m.Groups[2].Value, n, 0) : 0;
            int end = m.Groups[3].Success ? Bound(m.Groups[3].Value, n, n) : n;
            if (end > n || start > end)
                throw new InvalidDataException($"split '{part}' needs examples {start}..{end} but '{name}' has {n}: the source is smaller than VTAB's");
            parts.Add(new SplitSlice(name, start, end));
        }
        return parts;
    }

    static int Bound(string text, int n, int empty)
    {
        if (text.Length == 0) return empty;
        int v;
        if (text.EndsWith('%'))
            v = (int)Math.Round(double.Parse(text[..^1], CultureInfo.InvariantCulture) * n / 100.0, MidpointRounding.ToEven);
        else v = int.Parse(text, CultureInfo.InvariantCulture);
        return v < 0 ? Math.Max(0, n + v) : Math.Min(v, n);
    }
}
