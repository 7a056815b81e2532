namespace VptSharp.IO;

/// <summary>Writes a file so that readers see either the old file or the complete new one, never a half file.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write) => WriteVia(path, tmp =>
    {
        using var s = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write);
        write(s);
        s.Flush(flushToDisk: true);
    });

    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, leaveOpen: true); w.Write(text); });

    /// <summary>A copy of <paramref name="source"/> at <paramref name="path"/>, appearing whole or not at all.</summary>
    public static void Copy(string source, string path) => WriteVia(path, tmp => File.Copy(source, tmp));

    /// <summary>
    /// For writers that only take a path (e.g. an optimizer's state_dict): <paramref name="writeTo"/> writes a unique
    /// temporary file beside <paramref name="path"/>, which then replaces it; on failure the temporary file is removed.
    /// </summary>
    public static void WriteVia(string path, Action<string> writeTo)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string tmp = TempPathFor(full);
        try
        {
            writeTo(tmp);
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>Moves the complete folder <paramref name="built"/> (made beside <paramref name="final"/>, e.g. at
    /// <see cref="TempPathFor"/>) to <paramref name="final"/>, replacing any folder there: readers see the old folder or the
    /// new one, and the old one is removed after the swap.</summary>
    public static void ReplaceDirectory(string built, string final)
    {
        if (Directory.Exists(final))
        {
            string old = $"{final}.old-{Environment.ProcessId}-{Guid.NewGuid():N}";
            Directory.Move(final, old);
            Directory.Move(built, final);
            Directory.Delete(old, recursive: true);
        }
        else Directory.Move(built, final);
    }

    /// <summary>A unique name beside <paramref name="path"/> (same folder, so the final move is a rename) for a file or folder being built.</summary>
    public static string TempPathFor(string path) => $"{Path.GetFullPath(path)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
}
