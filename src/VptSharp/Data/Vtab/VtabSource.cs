using System.Text.Json;
using System.Text.RegularExpressions;

namespace VptSharp.Data.Vtab;

/// <summary>
/// Where a VTAB task's examples come from: named source splits of known size, each readable in a fixed order, every
/// example a <see cref="TfExample"/> with an encoded "image" and the dataset's TFDS feature names — so VTAB's split
/// strings and label functions apply to every source alike.
/// </summary>
public interface IVtabSource
{
    /// <summary>What the source is (for messages and the build summary).</summary>
    string Description { get; }
    IReadOnlyDictionary<string, int> SplitSizes { get; }
    /// <summary>Examples [start, end) of a source split, in order.</summary>
    IEnumerable<TfExample> Read(string split, int start, int end);
}

/// <summary>
/// A TFDS-prepared dataset: DIR/&lt;builder&gt;[/&lt;config&gt;]/&lt;version&gt;/&lt;name&gt;-&lt;split&gt;.tfrecord[-0000i-of-0000n] shards
/// of tf.train.Example records, read in shard order — the order TFDS reads, on which "train[:800]" depends. Split sizes
/// come from dataset_info.json's shard lengths when present, else from counting records.
/// </summary>
public sealed class TfdsSource : IVtabSource
{
    readonly Dictionary<string, List<(string Path, int? Count)>> shards = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> sizes = new(StringComparer.Ordinal);

    public string Description { get; }
    public string VersionDir { get; }
    public IReadOnlyDictionary<string, int> SplitSizes => sizes;

    /// <param name="root">the TFDS data dir (holding &lt;builder&gt;/), the builder folder, or the version folder itself</param>
    public TfdsSource(string root, string builder, string? preferredVersion = null)
    {
        if (!Directory.Exists(root)) throw new InputFileException(root, $"no such folder (a TFDS data dir holding {builder}/ is expected)", "tfds-folder");
        VersionDir = FindVersionDir(root, builder, preferredVersion);
        var files = Directory.GetFiles(VersionDir, "*.tfrecord*");
        if (files.Length == 0) throw new InvalidDataException($"{VersionDir}: no *.tfrecord* shards (newer TFDS may write array_record files: prepare the dataset with file_format='tfrecord')");
        foreach (var f in files)
        {
            var m = Regex.Match(Path.GetFileName(f), @"^.+-([a-z_0-9]+)\.tfrecord(?:-(\d+)-of-(\d+))?$");
            if (!m.Success) continue;
            string split = m.Groups[1].Value;
            if (!shards.TryGetValue(split, out var list)) shards[split] = list = [];
            list.Add((f, null));
        }
        foreach (var list in shards.Values) list.Sort((a, b) => string.CompareOrdinal(a.Path, b.Path));
        var lengths = ShardLengths(Path.Combine(VersionDir, "dataset_info.json"));
        foreach (var (split, list) in shards)
        {
            if (lengths.TryGetValue(split, out var l) && l.Count == list.Count)
                for (int i = 0; i < list.Count; i++) list[i] = (list[i].Path, l[i]);
            else
                for (int i = 0; i < list.Count; i++) list[i] = (list[i].Path, TfRecordReader.Count(list[i].Path));
            sizes[split] = list.Sum(s => s.Count!.Value);
        }
        Description = $"TFDS {VersionDir} ({string.Join(", ", sizes.Select(kv => $"{kv.Key} {kv.Value}"))})";
    }

    static string FindVersionDir(string root, string builder, string? preferred)
    {
        bool IsVersion(string d) => Regex.IsMatch(Path.GetFileName(d), @"^\d+\.\d+\.\d+$");
        if (Directory.GetFiles(root, "*.tfrecord*").Length > 0) return root;
        string dir = Directory.Exists(Path.Combine(root, builder)) ? Path.Combine(root, builder) : root;
        var versions = Directory.GetDirectories(dir).Where(IsVersion).ToList();
        if (versions.Count == 0)
            throw new InputFileException(root, $"no TFDS folder {builder}/<version>/ with .tfrecord shards; prepare one with tfds.builder(\"{builder}\").download_and_prepare(data_dir=...)", "tfds-folder");
        return versions.FirstOrDefault(v => Path.GetFileName(v) == preferred)
            ?? versions.OrderByDescending(v => Version.Parse(Path.GetFileName(v))).First();
    }

    /// <summary>dataset_info.json: "splits": [{"name": "train", "shardLengths": ["…", …]}] (TFDS ≥ 4; numbers may be strings).</summary>
    static Dictionary<string, List<int>> ShardLengths(string path)
    {
        var result = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        if (!File.Exists(path)) return result;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (!doc.RootElement.TryGetProperty("splits", out var splits) || splits.ValueKind != JsonValueKind.Array) return result;
            foreach (var s in splits.EnumerateArray())
            {
                if (!s.TryGetProperty("name", out var name) || !s.TryGetProperty("shardLengths", out var sl)) continue;
                result[name.GetString()!] = sl.EnumerateArray()
                    .Select(v => v.ValueKind == JsonValueKind.String ? int.Parse(v.GetString()!) : v.GetInt32()).ToList();
            }
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or OverflowException)
        {
            throw new InvalidDataException($"{path}: unreadable dataset_info.json ({e.Message}); delete it to count records instead");
        }
        return result;
    }

    public IEnumerable<TfExample> Read(string split, int start, int end)
    {
        if (!shards.TryGetValue(split, out var list)) throw new InvalidDataException($"{VersionDir}: no '{split}' shards");
        int position = 0;
        foreach (var (path, count) in list)
        {
            int n = count!.Value;
            if (position + n <= start) { position += n; continue; } // the whole shard lies before the slice
            if (position >= end) yield break;
            foreach (var record in TfRecordReader.Read(path))
            {
                if (position >= end) yield break;
                if (position++ < start) continue;
                TfExample ex;
                try { ex = TfExample.Parse(record); }
                catch (InvalidDataException e) { throw new InvalidDataException($"{path}: record {position - 1} of '{split}': {e.Message}"); }
                yield return ex;
            }
        }
    }
}
