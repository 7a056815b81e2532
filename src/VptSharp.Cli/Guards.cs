using System.CommandLine;

namespace VptSharp.Cli;

/// <summary>Checks the CLI makes before it writes anything or asks for resources: nothing already saved is replaced
/// unless the user says so (--force / --resume), and numeric flags stay within what the machine can do.</summary>
internal static class Guards
{
    public static readonly Option<bool> Force = new("--force") { Description = "replace an existing output (refused otherwise)" };

    /// <summary>Largest --threads accepted.</summary>
    public const int MaxThreads = 256;

    public static void CheckThreads(int threads)
    {
        if (threads < 0 || threads > MaxThreads) throw new ArgumentException($"--threads {threads}: must be in 0..{MaxThreads} (0 = all cores)");
    }

    static readonly string[] RunFiles = ["train-state.json", "task.vpt", "best.vpt", "last.vpt", "metrics.jsonl"];

    /// <summary>`train --out DIR` on a folder that already holds a run: refused unless --resume (continue it) or --force
    /// (start over: its training state is removed first, so a kill cannot mix the two runs).</summary>
    public static void CheckRunFolder(string outDir, bool resume, bool force)
    {
        if (resume || !Directory.Exists(outDir)) return;
        var existing = RunFiles.Where(f => File.Exists(Path.Combine(outDir, f))).ToList();
        if (existing.Count == 0) return;
        if (!force)
            throw new ArgumentException($"{outDir}: already holds a run ({string.Join(", ", existing)}); pass --resume to continue it, --force to start over in it, or another --out");
        File.Delete(Path.Combine(outDir, "train-state.json"));
    }

    /// <summary>An output path must not be one of the inputs, and an existing file is replaced only with --force.</summary>
    public static void CheckOutput(string output, IEnumerable<string> inputs, bool force, string option)
    {
        string full = Path.GetFullPath(output);
        if (inputs.Any(i => Same(i, full)))
            throw new ArgumentException($"{option} {output}: is also an input; write the result to another file");
        if (Directory.Exists(full)) throw new ArgumentException($"{option} {output}: is a folder; name a file");
        if (File.Exists(full) && !force)
            throw new ArgumentException($"{option} {output}: already exists; pass --force to replace it, or name another file");
    }

    /// <summary>A JSON report path: never an input; an existing file only if it is itself a JSON report (or --force).</summary>
    public static void CheckJsonOutput(string output, IEnumerable<string> inputs, bool force, string option)
    {
        string full = Path.GetFullPath(output);
        if (inputs.Any(i => Same(i, full)))
            throw new ArgumentException($"{option} {output}: is also an input; write the result to another file");
        if (File.Exists(full) && !force && !LooksLikeJson(full))
            throw new ArgumentException($"{option} {output}: exists and is not a JSON report; pass --force to replace it, or name another file");
    }

    static bool LooksLikeJson(string path)
    {
        using var s = File.OpenRead(path);
        int b;
        while ((b = s.ReadByte()) is ' ' or '\n' or '\r' or '\t') { }
        return b is '{' or '[' || b < 0;
    }

    static bool Same(string a, string fullB)
    {
        string fullA = Path.GetFullPath(a);
        if (fullA == fullB) return true;
        try
        {
            // Hard links and symlinks to the same file count as the same.
            var ia = new FileInfo(fullA); var ib = new FileInfo(fullB);
            if (!ia.Exists || !ib.Exists) return false;
            string ra = ia.ResolveLinkTarget(true)?.FullName ?? fullA, rb = ib.ResolveLinkTarget(true)?.FullName ?? fullB;
            return ra == rb;
        }
        catch (IOException) { return false; }
    }
}
