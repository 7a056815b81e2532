namespace VptSharp.IO;

/// <summary>
/// Reading a decompressing stream to its end with a ceiling: a few kilobytes of gzip or deflate can inflate without
/// bound, so every reader of a downloaded compressed file names the largest output it accepts.
/// </summary>
public static class BoundedInflate
{
    /// <summary>All of <paramref name="s"/> in memory, refused (naming <paramref name="name"/>) past <paramref name="limit"/>
    /// bytes; the limit is at most <see cref="Array.MaxLength"/> (one array holds the result).</summary>
    public static byte[] ReadAll(Stream s, long limit, string name)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(limit, Array.MaxLength);
        using var m = new MemoryStream();
        CopyTo(s, m, limit, name);
        return m.ToArray();
    }

    /// <summary>Copies <paramref name="s"/> into <paramref name="destination"/>, refused past <paramref name="limit"/> bytes.</summary>
    public static void CopyTo(Stream s, Stream destination, long limit, string name)
    {
        var buf = new byte[1 << 16];
        long total = 0;
        int Next()
        {
            try { return s.Read(buf, 0, buf.Length); }
            catch (InvalidDataException e) { throw new InvalidDataException($"{name}: does not inflate ({e.Message}); download it again", e); }
        }
        for (int n; (n = Next()) > 0;)
        {
            total += n;
            if (total > limit) throw new InvalidDataException($"{name}: inflates past {limit:N0} bytes; not the file expected");
            destination.Write(buf, 0, n);
        }
    }
}
