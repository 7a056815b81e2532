using System.Text.Json;
using TorchSharp;
using VptSharp.Checkpoints;
using VptSharp.Tuning;

namespace VptSharp.Training;

/// <summary>
/// The files of a training run folder that make a kill at any moment resumable: epoch checkpoints
/// (<c>ckpt-eNNNN.*</c>, with the epoch's last/best task files staged beside them), train-state.json as the commit
/// point, and the published <c>last.vpt</c> / <c>best.vpt</c>.
/// </summary>
public static class RunFolder
{
    public static bool IsCheckpointName(string name) => System.Text.RegularExpressions.Regex.IsMatch(name, @"^ckpt-e\d{4,}$");

    /// <summary>Reads train-state.json; anything unreadable or inconsistent is a one-line error naming the field.</summary>
    public static T ReadState<T>(string path, Func<T, string?> badField) where T : class
    {
        T? st;
        try { st = JsonSerializer.Deserialize<T>(File.ReadAllText(path)); }
        catch (JsonException e) { throw new CheckpointException($"{path}: not a training state ({FirstLine(e.Message)}); delete it to start over", setting: "out-dir"); }
        if (st is null) throw new CheckpointException($"{path}: empty training state; delete it to start over", setting: "out-dir");
        if (badField(st) is string field)
            throw new CheckpointException($"{path}: field '{field}' is missing or inconsistent; delete it to start over", setting: "out-dir");
        return st;
    }

    /// <summary>
    /// Finishes the publish step of committed checkpoint <paramref name="ckpt"/>: its staged task files become last.vpt /
    /// best.vpt, and every other checkpoint file (older ones, or the uncommitted leftovers of a killed save) and every
    /// temporary file of an interrupted atomic write is deleted. <paramref name="ckpt"/> null: nothing is committed.
    /// </summary>
    public static void Publish(string outDir, string? ckpt)
    {
        if (ckpt is not null)
            foreach (var kind in new[] { "last", "best" })
            {
                string staged = Path.Combine(outDir, $"{ckpt}.{kind}.vpt");
                if (File.Exists(staged)) File.Move(staged, Path.Combine(outDir, kind + ".vpt"), overwrite: true);
            }
        foreach (var f in Directory.GetFiles(outDir))
        {
            string name = Path.GetFileName(f);
            bool stale = name.StartsWith("ckpt-e") && (ckpt is null || !(name.StartsWith(ckpt + ".") && !name.Contains(".tmp")));
            bool tmp = name.Contains(".tmp-") && (name.StartsWith("train-state.json") || name.StartsWith("metrics.jsonl") || name.StartsWith("last.vpt") || name.StartsWith("best.vpt"));
            if (stale || tmp) File.Delete(f);
        }
    }

    /// <summary>Whether last.vpt and best.vpt hold the epochs the state names (their metadata records the epoch).</summary>
    public static (bool LastOk, bool BestOk) TaskFilesMatch(string outDir, int epochsDone, int bestEpoch) =>
        (EpochOf(Path.Combine(outDir, "last.vpt")) == epochsDone, bestEpoch < 1 || EpochOf(Path.Combine(outDir, "best.vpt")) == bestEpoch);

    static int? EpochOf(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var meta = SafetensorsFile.ReadMetadata(path);
            if (!meta.TryGetValue(TaskArtifact.MetadataKey, out var json)) return null;
            var metrics = System.Text.Json.Nodes.JsonNode.Parse(json)?["metrics"]?["epoch"];
            return metrics is null ? null : (int)metrics.GetValue<double>();
        }
        catch (Exception e) when (e is CheckpointException or JsonException or InvalidOperationException or FormatException or IOException) { return null; }
    }

    public static void LoadOptimizer(TorchSharp.Modules.OptimizerHelper optimizer, string path)
    {
        if (!File.Exists(path)) throw new CheckpointException($"{path}: optimizer state missing", setting: "out-dir");
        try { optimizer.load_state_dict(path); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new CheckpointException($"{path}: optimizer state does not fit this run ({FirstLine(e.Message)}); " +
                "the interrupted run had another method, optimizer or prompt length", setting: "out-dir");
        }
    }

    /// <summary>The first line of a message (native libtorch errors append their C++ stack frames).</summary>
    public static string FirstLine(string message)
    {
        int cut = message.IndexOfAny(['\n', '\r']);
        return (cut < 0 ? message : message[..cut]).Trim();
    }
}
