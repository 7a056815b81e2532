namespace VptSharp.Data.Vtab.Archives;

/// <summary>
/// What every reader of a downloaded release shares: names read from a list or annotation file must stay inside the
/// release's folder, and a file whose fields contradict its own structure (a short array, a missing key, a number
/// out of range) is reported as a malformed source, named, instead of surfacing as a runtime exception.
/// </summary>
public static class ArchiveChecks
{
    /// <summary><paramref name="relative"/> (as a list file names it) resolved under <paramref name="root"/>; a rooted
    /// name or one that climbs out with ".." is refused: the builders copy what they resolve into the output.</summary>
    public static string Under(string root, string relative, string listedIn)
    {
        string full = Path.GetFullPath(Path.Combine(root, relative)), top = Path.GetFullPath(root);
        if (!Path.EndsInDirectorySeparator(top)) top += Path.DirectorySeparatorChar; // "/" and "E:\" already end in one
        if (Path.IsPathRooted(relative) || !full.StartsWith(top, StringComparison.Ordinal))
            throw new InvalidDataException($"{listedIn}: entry '{relative}' points outside {root}; the list file is not the release's");
        return full;
    }

    /// <summary>The runtime exceptions a reader's indexing and conversions raise on fields that contradict each other.</summary>
    public static bool IsMalformed(Exception e) => e is IndexOutOfRangeException or ArgumentException or OverflowException or KeyNotFoundException
        or InvalidCastException or EndOfStreamException or InvalidOperationException or FormatException or NullReferenceException
        or System.Text.Json.JsonException;

    public static InvalidDataException Malformed(string source, Exception e) =>
        new($"{source}: malformed ({e.GetType().Name}: {e.Message}); the files are corrupt or not the release this reader expects, download or extract them again", e);
}
