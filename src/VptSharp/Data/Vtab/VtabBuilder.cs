using VptSharp.Data.MiniSuite;

namespace VptSharp.Data.Vtab;

public sealed record VtabBuildResult(string TaskDir, int Train800, int Val200, int Test, int Classes, string Source, IReadOnlyDictionary<string, string> SplitStrings);

/// <summary>
/// Writes one VTAB-1k task in the list layout suites/vtab-1k.json reads: &lt;out&gt;/&lt;task&gt;/images/{train800,val200,test}/NNNNNN.(png|jpg),
/// train800.txt, val200.txt, train800val200.txt (the first two concatenated) and test.txt, one "images/… label" per
/// line. The task is assembled in a temporary folder and renamed into place, so an interrupted build leaves nothing
/// that looks finished; an existing task folder is never overwritten.
/// </summary>
public static class VtabBuilder
{
    public static VtabBuildResult Build(VtabTask task, IVtabSource source, string outDir, Action<string, int>? progress = null)
    {
        string final = Path.Combine(outDir, task.Name);
        if (Directory.Exists(final))
            throw new InputFileException(final, "already exists (a built task is never overwritten)", "out-dir");
        var (train, val, test) = task.Splits(source.SplitSizes);
        var splits = new Dictionary<string, string> { ["train800"] = train, ["val200"] = val, ["test"] = test };
        var slices = splits.ToDictionary(kv => kv.Key, kv => SplitSlice.Parse(kv.Value, source.SplitSizes));
        foreach (var (name, parts) in slices)
        {
            int expected = name switch { "train800" => 800, "val200" => 200, _ => -1 };
            if (expected > 0 && parts.Sum(p => p.Count) != expected)
                throw new InvalidDataException($"{source.Description}: {name} = {splits[name]} holds {parts.Sum(p => p.Count)} examples, not {expected}: the source split is too small");
        }
        string tmp = Path.Combine(outDir, $".{task.Name}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        var lists = new Dictionary<string, List<string>>();
        try
        {
            foreach (var (name, parts) in slices)
            {
                Directory.CreateDirectory(Path.Combine(tmp, "images", name));
                var lines = lists[name] = [];
                int index = 0;
                foreach (var part in parts)
                    foreach (var ex in source.Read(part.Split, part.Start, part.End))
                    {
                        int label = task.Label(ex);
                        if (label < 0 || label >= task.Classes)
                            throw new InvalidDataException($"{source.Description}: {part.Split} example {part.Start + index} has label {label}, outside 0..{task.Classes - 1} for {task.Name}");
                        var (bytes, ext) = ImageFile(ex.BytesOf("image"), task.BinaryImage);
                        string rel = $"images/{name}/{index:D6}{ext}";
                        File.WriteAllBytes(Path.Combine(tmp, rel), bytes);
                        lines.Add($"{rel} {label}");
                        index++;
                        progress?.Invoke(name, index);
                    }
                if (lines.Count != parts.Sum(p => p.Count))
                    throw new InvalidDataException($"{source.Description}: {name} gave {lines.Count} examples, expected {parts.Sum(p => p.Count)}");
            }
            void WriteList(string file, IEnumerable<string> lines) => File.WriteAllText(Path.Combine(tmp, file), string.Concat(lines.Select(l => l + "\n")));
            WriteList("train800.txt", lists["train800"]);
            WriteList("val200.txt", lists["val200"]);
            WriteList("train800val200.txt", lists["train800"].Concat(lists["val200"]));
            WriteList("test.txt", lists["test"]);
            Directory.Move(tmp, final);
        }
        catch (Exception e)
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            if (e is not VptException && Archives.ArchiveChecks.IsMalformed(e)) throw Archives.ArchiveChecks.Malformed(source.Description, e);
            throw;
        }
        return new VtabBuildResult(final, lists["train800"].Count, lists["val200"].Count, lists["test"].Count, task.Classes, source.Description, splits);
    }

    /// <summary>The bytes to store and their extension: PNG and JPEG pass through untouched; 0/1-valued images (dSprites)
    /// are scaled to 0/255 as VTAB does and stored as PNG.</summary>
    public static (byte[] Bytes, string Extension) ImageFile(byte[] encoded, bool binary)
    {
        if (binary)
        {
            var img = FileImageDataset.Decode(encoded, "image");
            var px = img.Pixels;
            for (int i = 0; i < px.Length; i++) px[i] = (byte)Math.Min(255, px[i] * 255);
            return (MiniSuiteWriter.EncodePng(img), ".png");
        }
        if (encoded.Length > 8 && encoded[0] == 0x89 && encoded[1] == (byte)'P' && encoded[2] == (byte)'N' && encoded[3] == (byte)'G') return (encoded, ".png");
        if (encoded.Length > 3 && encoded[0] == 0xFF && encoded[1] == 0xD8) return (encoded, ".jpg");
        throw new InvalidDataException("an example's image is neither PNG nor JPEG");
    }
}
