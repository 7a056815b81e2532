using System.Text.RegularExpressions;

namespace VptSharp.Data;

/// <summary>
/// Opens a dataset from a command-line spec:
/// a folder with one sub-folder per class; a list file (*.txt, "path label" lines); a JSON map (*.json);
/// "fashion-mnist:train|test[START:END]"; "fractal:CLASSES:PER_CLASS[:SEED]"; "SPEC@0,2,5-7" keeps classes;
/// "A+B" puts datasets side by side with disjoint labels; "A|B" pools splits of one dataset over the same classes
/// (FGVC "train.json|val.json"). Precedence: '+' splits first, then '|', and "@" applies to one part.
/// </summary>
public static class DatasetSpec
{
    /// <summary>"0,2,5-7" → [0, 2, 5, 6, 7].</summary>
    public static int[] ParseClassList(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries).SelectMany(part =>
    {
        var r = part.Split('-');
        return r.Length == 2 ? Enumerable.Range(int.Parse(r[0]), int.Parse(r[1]) - int.Parse(r[0]) + 1) : [int.Parse(part)];
    }).ToArray();

    public static ImageDataset Open(string spec, IReadOnlyList<string>? classes = null, bool skipBad = false, Action<string>? log = null)
    {
        // "A+B": side by side with disjoint labels; "SPEC@0,3,5": only those classes, renumbered.
        if (spec.Contains('+'))
            return new ConcatDataset(spec.Split('+').Select(s => Open(s, null, skipBad, log)).ToArray());
        // "A|B": splits of one dataset pooled, labels matched by class name ('+' binds looser, '@' tighter).
        if (spec.Contains('|'))
            return new UnionDataset(spec.Split('|').Select(s => Open(s, classes, skipBad, log)).ToArray());
        var filter = Regex.Match(spec, @"^(.*)@([\d,\-]+)$");
        if (filter.Success)
            return new ClassFilterDataset(Open(filter.Groups[1].Value, null, skipBad, log), ParseClassList(filter.Groups[2].Value));
        var fm = Regex.Match(spec, @"^fashion-mnist:(train|test)(?:\[(\d*):(\d*)\])?$");
        if (fm.Success)
        {
            ImageDataset ds = new FashionMnist(fm.Groups[1].Value);
            if (fm.Groups[2].Success)
            {
                int a = fm.Groups[2].Value == "" ? 0 : int.Parse(fm.Groups[2].Value);
                int b = fm.Groups[3].Value == "" ? ds.Count : Math.Min(ds.Count, int.Parse(fm.Groups[3].Value));
                ds = ds.Subset(Enumerable.Range(a, Math.Max(0, b - a)).ToArray());
            }
            return ds;
        }
        var fr = Regex.Match(spec, @"^fractal:(\d+):(\d+)(?::(\d+))?$");
        if (fr.Success)
            return new FractalImages(int.Parse(fr.Groups[1].Value), int.Parse(fr.Groups[2].Value), 32,
                fr.Groups[3].Success ? int.Parse(fr.Groups[3].Value) : 0);

        FileImageDataset files;
        if (spec.StartsWith("fashion-mnist:") || spec.StartsWith("fractal:"))
            throw new ArgumentException($"bad dataset spec '{spec}'; use fashion-mnist:train|test[START:END] or fractal:CLASSES:PER_CLASS[:SEED]");
        if (Directory.Exists(spec)) files = FileImageDataset.FromFolder(spec, classes);
        else if (spec.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) files = FileImageDataset.FromJsonMap(spec, null, classes);
        else if (File.Exists(spec)) files = FileImageDataset.FromListFile(spec, null, classes);
        else throw new FileNotFoundException($"{spec}: no such data folder or list file; pass a folder of class sub-folders, a list/JSON file, fashion-mnist:train or fractal:C:N");
        int bad = files.Validate(skipBad);
        if (bad > 0) log?.Invoke($"skipped {bad} bad image(s) in {spec}");
        return files;
    }
}
