using System.Text.Json;
using SkiaSharp;

namespace VptSharp.Data;

/// <summary>
/// Images on disk with labels: an image folder (one sub-folder per class), a list file ("relative/path label"
/// per line, VTAB-1k style) or a JSON map path→label (FGVC style). Decoding uses SkiaSharp.
/// </summary>
public sealed class FileImageDataset : ImageDataset
{
    static readonly HashSet<string> ImageExtensions = new(StringComparer.OrdinalIgnoreCase)
        { ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ico", ".wbmp", ".heif", ".heic", ".avif" };

    /// <summary>Most classes a dataset (and so a task's head) may have.</summary>
    public const int MaxClasses = 65_536;

    readonly List<string> paths;
    readonly List<int> labels;
    readonly string[] classes;

    public FileImageDataset(IEnumerable<(string Path, int Label)> samples, string[] classes)
    {
        var s = samples.ToList();
        paths = s.Select(x => x.Path).ToList();
        labels = s.Select(x => x.Label).ToList();
        this.classes = classes;
    }

    public override int Count => paths.Count;
    public override IReadOnlyList<string> Classes => classes;
    public override int LabelOf(int index) => labels[index];
    public override string NameOf(int index) => paths[index];

    public override RgbImage Load(int index) => Decode(paths[index]);

    public static RgbImage Decode(string path) => ImageDecoder.DecodeFile(path);

    /// <summary>Decodes encoded bytes (JPEG, PNG, ...) to RGB with bounded memory; see <see cref="ImageDecoder"/>.</summary>
    public static RgbImage Decode(byte[] data, string name) => ImageDecoder.Decode(data, name);

    /// <summary>Checks every file exists and has a decodable header within the size limits (with <paramref name="skipBad"/>,
    /// decodes it fully, so truncated files are found before training). Bad files either fail with one clear
    /// message (naming the file), or with <paramref name="skipBad"/> are dropped and counted.</summary>
    public int Validate(bool skipBad)
    {
        int removed = 0;
        for (int i = Count - 1; i >= 0; i--)
        {
            string? reason = ImageDecoder.Check(paths[i], fullDecode: skipBad);
            if (reason is null) continue;
            if (!skipBad) throw new BadImageException(paths[i], reason);
            paths.RemoveAt(i); labels.RemoveAt(i); removed++;
        }
        return removed;
    }

    /// <summary>One sub-folder per class (sorted by name, as torchvision's ImageFolder).</summary>
    public static FileImageDataset FromFolder(string root, IReadOnlyList<string>? classes = null)
    {
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"{root}: data folder not found");
        var found = Directory.GetDirectories(root).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        var names = classes?.ToArray() ?? found!;
        if (names.Length == 0) throw new ArgumentException($"{root}: no class sub-folders; expected {root}/<class>/<image> (one folder per class)");
        if (classes is not null)
        {
            var missing = classes.Where(c => !Directory.Exists(Path.Combine(root, c))).ToList();
            if (missing.Count > 0)
                throw new ArgumentException($"{root}: missing class folder(s) {string.Join(", ", missing)}; every split needs the training classes (create empty folders if a class has no images here)");
        }
        var samples = new List<(string, int)>();
        for (int c = 0; c < names.Length; c++)
            foreach (var f in Directory.EnumerateFiles(Path.Combine(root, names[c]!), "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
                if (ImageExtensions.Contains(Path.GetExtension(f))) samples.Add((f, c));
        if (samples.Count == 0) throw new ArgumentException($"{root}: class folders hold no images");
        return new FileImageDataset(samples, names!);
    }

    /// <summary>"relative/path label" lines (VTAB-1k list files); paths relative to <paramref name="imageRoot"/> (default: the list's folder).</summary>
    public static FileImageDataset FromListFile(string listFile, string? imageRoot = null, IReadOnlyList<string>? classes = null)
    {
        if (!File.Exists(listFile)) throw new FileNotFoundException($"{listFile}: list file not found", listFile);
        string root = imageRoot ?? Path.GetDirectoryName(Path.GetFullPath(listFile))!;
        var samples = new List<(string, int)>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(listFile))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            int cut = line.TrimEnd().LastIndexOf(' ');
            if (cut <= 0 || !int.TryParse(line.AsSpan(cut + 1).Trim(), out int label) || label < 0)
                throw new FormatException($"{listFile}:{lineNo}: expected 'relative/path label', got '{line.Trim()}'");
            CheckLabel(label, classes, $"{listFile}:{lineNo}");
            samples.Add((Path.Combine(root, line[..cut].Trim()), label));
        }
        int n = Math.Max(samples.Count == 0 ? 0 : samples.Max(s => s.Item2) + 1, classes?.Count ?? 0);
        return new FileImageDataset(samples, classes?.ToArray() ?? Enumerable.Range(0, n).Select(i => i.ToString()).ToArray());
    }

    /// <summary>A label read from a file is a class index below the class count (when known) and the class limit; a
    /// huge label would otherwise make a head of that many classes.</summary>
    static int CheckLabel(int label, IReadOnlyList<string>? classes, string where)
    {
        if (classes is not null && label >= classes.Count)
            throw new FormatException($"{where}: label {label} but the task has {classes.Count} classes (0..{classes.Count - 1}); fix the label or use the task's data");
        if (label >= MaxClasses)
            throw new FormatException($"{where}: label {label} is over the {MaxClasses:N0}-class limit; labels are class indices 0..C-1");
        return label;
    }

    static JsonDocument ParseJsonMap(string jsonFile)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(jsonFile)); }
        catch (JsonException e) { throw new FormatException($"{jsonFile}: not valid JSON ({e.Message.Split('\n')[0]}); expected {{\"relative/path\": label, ...}}"); }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        { doc.Dispose(); throw new FormatException($"{jsonFile}: expected a JSON object {{\"relative/path\": label, ...}}"); }
        return doc;
    }

    /// <summary>FGVC-style JSON map {"relative/path": label, ...}; labels may be ints or class names.</summary>
    public static FileImageDataset FromJsonMap(string jsonFile, string? imageRoot = null, IReadOnlyList<string>? classes = null)
    {
        if (!File.Exists(jsonFile)) throw new FileNotFoundException($"{jsonFile}: JSON map not found", jsonFile);
        string root = imageRoot ?? Path.GetDirectoryName(Path.GetFullPath(jsonFile))!;
        using var doc = ParseJsonMap(jsonFile);
        var entries = doc.RootElement.EnumerateObject().Select(p => (p.Name, p.Value)).ToList();
        foreach (var (name, value) in entries)
        {
            int l = -1;
            if (value.ValueKind == JsonValueKind.Number ? !value.TryGetInt32(out l) || l < 0 : value.ValueKind != JsonValueKind.String)
                throw new FormatException($"{jsonFile}: label of {name} is {value.GetRawText()}; labels are class indices (0, 1, …) or class names");
            if (value.ValueKind == JsonValueKind.Number) CheckLabel(l, classes, $"{jsonFile}: {name}");
        }
        bool named = entries.Any(e => e.Value.ValueKind == JsonValueKind.String);
        string[] names = classes?.ToArray() ?? (named
            ? entries.Select(e => e.Value.ToString()).Distinct().Order(StringComparer.Ordinal).ToArray()
            : Enumerable.Range(0, entries.Count == 0 ? 0 : entries.Max(e => e.Value.GetInt32()) + 1).Select(i => i.ToString()).ToArray());
        var index = names.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i);
        var samples = entries.Select(e => (Path.Combine(root, e.Name),
            e.Value.ValueKind == JsonValueKind.Number ? CheckLabel(e.Value.GetInt32(), names, $"{jsonFile}: {e.Name}")
            : index.TryGetValue(e.Value.GetString()!, out int l) ? l
            : throw new FormatException($"{jsonFile}: label '{e.Value}' of {e.Name} is not one of the training classes"))).ToList();
        return new FileImageDataset(samples, names);
    }
}
