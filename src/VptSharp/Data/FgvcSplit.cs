using System.Text.Json;

using VptSharp.IO;
namespace VptSharp.Data;

/// <summary>
/// Makes the train/val split for FGVC datasets that ship only train and test (the VPT protocol holds out 10% of
/// train for the grid search): a seeded, class-stratified split of a JSON map (path→label, as
/// <see cref="FileImageDataset.FromJsonMap"/> reads) into train.json and val.json.
/// </summary>
public static class FgvcSplit
{
    public sealed record Result(string TrainPath, string ValPath, int TrainCount, int ValCount, int Classes);

    /// <summary>
    /// Per class, round(count × <paramref name="valFraction"/>) samples (halves round up) go to val, always leaving at
    /// least one in train. Labels are copied as written (ints or names); entries keep their input order; image paths
    /// are rewritten relative to <paramref name="outDir"/> so they still resolve. Each file is written atomically.
    /// </summary>
    public static Result Write(string trainJson, double valFraction, int seed, string outDir)
    {
        if (!(valFraction > 0 && valFraction < 1)) throw new InvalidSettingException("val-fraction", valFraction, "must be in (0, 1), e.g. 0.1");
        if (!File.Exists(trainJson)) throw new FileNotFoundException($"{trainJson}: JSON map not found; pass the dataset's train.json (path → label)", trainJson);
        string srcDir = Path.GetDirectoryName(Path.GetFullPath(trainJson))!, dstDir = Path.GetFullPath(outDir);
        string trainOut = Path.Combine(dstDir, "train.json"), valOut = Path.Combine(dstDir, "val.json");
        if (Path.GetFullPath(trainJson) == trainOut || Path.GetFullPath(trainJson) == valOut)
            throw new InvalidSettingException("out-dir", outDir, $"would overwrite the input {trainJson}; choose another output folder, or rename the input first (e.g. train_full.json)");

        var entries = ReadMap(trainJson);
        if (entries.Count == 0) throw new FormatException($"{trainJson}: the JSON map is empty; expected {{\"relative/path.jpg\": label, ...}}");
        var rng = new Random(seed);
        var toVal = new HashSet<int>();
        var byClass = Enumerable.Range(0, entries.Count).GroupBy(i => entries[i].Label.GetRawText()).OrderBy(g => g.Key, StringComparer.Ordinal).ToList();
        foreach (var group in byClass)
        {
            var idx = group.ToArray();
            rng.Shuffle(idx);
            int nVal = Math.Min(idx.Length - 1, (int)Math.Round(idx.Length * valFraction, MidpointRounding.AwayFromZero));
            toVal.UnionWith(idx[..nVal]);
        }

        string Rebase(string key) => srcDir == dstDir ? key
            : Path.GetRelativePath(dstDir, Path.GetFullPath(Path.Combine(srcDir, key))).Replace(Path.DirectorySeparatorChar, '/');
        void Save(string path, bool val) => AtomicFile.Write(path, s =>
        {
            using var w = new Utf8JsonWriter(s, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            for (int i = 0; i < entries.Count; i++)
                if (toVal.Contains(i) == val) { w.WritePropertyName(Rebase(entries[i].Path)); entries[i].Label.WriteTo(w); }
            w.WriteEndObject();
        });
        // val first: a crash in between leaves no train.json that silently still holds the val images
        Save(valOut, val: true);
        Save(trainOut, val: false);
        return new Result(trainOut, valOut, entries.Count - toVal.Count, toVal.Count, byClass.Count);
    }

    static List<(string Path, JsonElement Label)> ReadMap(string file)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(file)); }
        catch (JsonException e) { throw new FormatException($"{file}: not valid JSON ({e.Message}); expected {{\"relative/path.jpg\": label, ...}}"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new FormatException($"{file}: expected a JSON object {{\"relative/path.jpg\": label, ...}}, got {doc.RootElement.ValueKind}");
            var list = new List<(string, JsonElement)>();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                bool ok = p.Value.ValueKind == JsonValueKind.String || (p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out int l) && l >= 0);
                if (!ok) throw new FormatException($"{file}: label of '{p.Name}' is {p.Value.GetRawText()}; labels must be class indices (0, 1, ...) or class names");
                list.Add((p.Name, p.Value.Clone()));
            }
            return list;
        }
    }
}
