using System.Text.Json;
using VptSharp.IO;

namespace VptSharp.Training;

// Persistence of a sweep: one indented JSON file per run under OUT/runs/TASK/METHOD/ID.json, written atomically; a
// file's existence means the run is done, which is what makes a sweep resumable.
public sealed partial class Sweep
{
    public static string ResultPath(string outDir, RunSpec s) => Path.Combine(outDir, "runs", s.Task, s.Method, s.Id + ".json");

    /// <summary>Every result file under a sweep folder.</summary>
    public static List<RunResult> LoadResults(string outDir)
    {
        string runs = Path.Combine(outDir, "runs");
        if (!Directory.Exists(runs)) return [];
        return Directory.EnumerateFiles(runs, "*.json", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => JsonSerializer.Deserialize<RunResult>(File.ReadAllText(f), JsonFormat.Indented)
                ?? throw new InputFileException(f, "empty result; delete it to rerun that run"))
            .ToList();
    }

    /// <summary>Refuses a folder that holds a run of another backbone (other weights, or the same weights under another
    /// architecture): resuming into it would put two backbones' numbers in one report. (Results without a recorded hash
    /// or architecture, e.g. failed runs and older results, say nothing.) <see cref="Run"/> calls it; a front end that
    /// records anything in the folder first calls it before.</summary>
    public void CheckFolderBackbone()
    {
        if (folderChecked) return; // the CLI checks before it writes sweep.json, then Run would read every result again
        string runs = Path.Combine(outDir, "runs");
        if (!Directory.Exists(runs)) return;
        foreach (var f in Directory.EnumerateFiles(runs, "*.json", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            RunResult r;
            try { r = ReadResult(f); }
            catch (JsonException e) { throw new InputFileException(f, $"not a run result ({e.Message}); delete it to rerun that run"); }
            if (r.BackboneSha256 is { Length: > 0 } sha && sha != backbone.Sha256)
                throw new BackboneMismatchException($"{f} is a run of backbone {r.Backbone} (sha256 {sha[..Math.Min(12, sha.Length)]}…), not of this sweep's " +
                                                    $"{backbone.Source} (sha256 {backbone.Sha256[..Math.Min(12, backbone.Sha256.Length)]}…); a sweep folder holds one backbone's runs");
            if (r.BackboneArchitecture is string arch && arch != backbone.Model.Architecture)
                throw new BackboneMismatchException($"{f} is a run of these weights as {arch}, not as this sweep's {backbone.Model.Architecture}; a sweep folder holds one backbone's runs");
        }
        folderChecked = true;
    }

    bool folderChecked;

    static RunResult ReadResult(string path) => JsonSerializer.Deserialize<RunResult>(File.ReadAllText(path), JsonFormat.Indented)!;

    static void WriteResult(string path, RunResult result) => AtomicFile.WriteAllText(path, JsonSerializer.Serialize(result, JsonFormat.Indented));
}
