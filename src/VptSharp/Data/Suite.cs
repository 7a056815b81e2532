using System.Text.Json;
using System.Text.Json.Serialization;

using VptSharp.IO;
namespace VptSharp.Data;

/// <summary>
/// One task of a benchmark suite, VTAB-1k style: a tuning split (train → val) for the grid search, then final runs on
/// train+val evaluated on test. Every split is a dataset spec (<see cref="DatasetSpec"/>): list files
/// ("relative/path label" lines), JSON path→label maps, class folders, or built-in sources. Relative paths resolve
/// against the suite's root.
/// </summary>
public sealed record SuiteTask
{
    public required string Name { get; init; }
    /// <summary>Natural, Specialized, Structured (VTAB-1k) or FGVC.</summary>
    public required string Group { get; init; }
    public required string Train { get; init; }
    public required string Val { get; init; }
    /// <summary>What the final runs train on: train + val for VTAB-1k (train800val200.txt); train alone for FGVC, as the
    /// reference (train.py uses the "trainval" split only for vtab- datasets).</summary>
    public required string TrainVal { get; init; }
    public required string Test { get; init; }
    /// <summary>"plain" (VTAB: resize) or "crop-flip" (FGVC).</summary>
    public string Augment { get; init; } = "plain";
    /// <summary>Number of classes, when known (a check against the data; 0 = not checked).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int Classes { get; init; }
}

/// <summary>A list of tasks with their groups, as a JSON file (suites/vtab-1k.json, suites/fgvc.json, suites/mini.json).</summary>
public sealed record Suite
{
    public required string Name { get; init; }
    /// <summary>Folder that relative split paths resolve against; relative to the suite file itself (default: its folder).</summary>
    public string Root { get; init; } = ".";
    public required IReadOnlyList<SuiteTask> Tasks { get; init; }

    /// <summary>Reads a suite file; <paramref name="root"/> overrides the file's root (e.g. `--data-root ~/vtab-1k`).</summary>
    public static Suite Load(string path, string? root = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such suite file; see suites/ for the shipped ones");
        Suite s;
        try { s = JsonSerializer.Deserialize<Suite>(File.ReadAllText(path), JsonFormat.Indented) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new ArgumentException($"{path}: not a suite file ({e.Message}); expected {{\"name\", \"root\", \"tasks\": [...]}}"); }
        string baseDir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string resolvedRoot = root ?? Path.GetFullPath(Path.Combine(baseDir, s.Root));
        var dup = s.Tasks.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"{path}: task '{dup.Key}' appears twice");
        return s with { Root = resolvedRoot };
    }

    public void Save(string path) => AtomicFile.WriteAllText(path, JsonSerializer.Serialize(this, JsonFormat.Indented));

    /// <summary>A split spec with relative file paths made absolute against <see cref="Root"/>; built-in parts
    /// (fashion-mnist:test, fractal:...) stay as they are, also inside "A+B" and "A|B".</summary>
    public string Resolve(string spec)
    {
        return string.Join('+', spec.Split('+').Select(union => string.Join('|', union.Split('|').Select(part =>
        {
            var at = part.LastIndexOf('@');
            string p = at > 0 ? part[..at] : part, filter = at > 0 ? part[at..] : "";
            return (p.Contains(':') && !Path.IsPathRooted(p) ? p : Path.GetFullPath(Path.Combine(Root, p))) + filter;
        }))));
    }

    public SuiteTask Task(string name) => Tasks.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"suite {Name} has no task '{name}' (tasks: {string.Join(", ", Tasks.Select(t => t.Name))})");
}
