using System.Text.Json;
using VptSharp.Data.Vtab.Archives;

namespace VptSharp.Data.Fgvc;

public sealed record FgvcBuildResult(string TaskDir, int Train, int Val, int Test, int Classes, bool OfficialVal);

/// <summary>
/// Builds the FGVC JSON maps suites/fgvc.json reads (&lt;out&gt;/&lt;task&gt;/{train,val,test}.json, image path relative to
/// the JSON → label 0..C−1) from the datasets' original release layouts. Where the release has no validation set
/// (all but Flowers), val is a seeded, class-stratified 10% of the official train (<see cref="FgvcSplit"/>), as the VPT
/// protocol does ("we split the training data if the public validation set is not available", KMnP/vpt README).
/// Images stay where they are.
/// </summary>
public static class FgvcBuilder
{
    /// <summary>--dataset name → the task folder of suites/fgvc.json.</summary>
    public static readonly IReadOnlyDictionary<string, string> TaskDirs = new Dictionary<string, string>
    {
        ["cub"] = "CUB_200_2011", ["nabirds"] = "nabirds", ["flowers"] = "OxfordFlower", ["dogs"] = "StanfordDogs", ["cars"] = "StanfordCars",
    };

    sealed record Item(string Path, int Label);

    public static FgvcBuildResult Build(string dataset, string from, string outDir, double valFraction = 0.1, int seed = 42)
    {
        if (!TaskDirs.TryGetValue(dataset.ToLowerInvariant(), out var taskDir))
            throw new ArgumentException($"unknown FGVC dataset '{dataset}'; use one of {string.Join(", ", TaskDirs.Keys)}");
        if (!Directory.Exists(from)) throw new InputFileException(from, "no such folder", "release-folder");
        List<Item> train, test;
        List<Item>? val;
        try
        {
            (train, val, test) = dataset.ToLowerInvariant() switch
            {
                "cub" => CubStyle(from, "CUB_200_2011"),
                "nabirds" => CubStyle(from, "nabirds"),
                "flowers" => Flowers(from),
                "dogs" => Dogs(from),
                _ => Cars(from),
            };
        }
        catch (Exception e) when (e is not VptException && ArchiveChecks.IsMalformed(e)) { throw ArchiveChecks.Malformed(from, e); }
        string dir = Path.Combine(outDir, taskDir);
        if (File.Exists(Path.Combine(dir, "test.json"))) throw new InputFileException(dir, "already holds test.json (built maps are never overwritten)", "out-dir");
        // Everything that can refuse the release is checked before the first map is written.
        if (val is null && !(valFraction > 0 && valFraction < 1)) throw new InvalidSettingException("val-fraction", valFraction, "must be in (0, 1), e.g. 0.1");
        if (train.Count == 0 || test.Count == 0) throw new InvalidDataException($"{from}: the release's annotation files list {train.Count} train and {test.Count} test images; extract the archive again");
        if (train.Concat(val ?? []).Concat(test).FirstOrDefault(i => i.Label < 0) is Item bad)
            throw new InvalidDataException($"{from}: {bad.Path} has class {bad.Label + 1}; the release numbers classes from 1");
        var missing = train.Concat(val ?? []).Concat(test).FirstOrDefault(i => !File.Exists(i.Path));
        if (missing is not null) throw new FileNotFoundException($"{missing.Path}: listed by the release's annotation files but missing; extract the archive again");
        Directory.CreateDirectory(dir);
        int classes = train.Select(i => i.Label).Distinct().Count();
        int nTrain, nVal;
        if (val is not null)
        {
            WriteMap(Path.Combine(dir, "val.json"), val, dir);
            WriteMap(Path.Combine(dir, "train.json"), train, dir);
            (nTrain, nVal) = (train.Count, val.Count);
        }
        else
        {
            string all = Path.Combine(dir, "train_official.json");
            WriteMap(all, train, dir);
            var r = FgvcSplit.Write(all, valFraction, seed, dir);
            (nTrain, nVal) = (r.TrainCount, r.ValCount);
        }
        WriteMap(Path.Combine(dir, "test.json"), test, dir); // last: its presence marks a finished build
        return new FgvcBuildResult(dir, nTrain, nVal, test.Count, classes, val is not null);
    }

    static void WriteMap(string path, IReadOnlyList<Item> items, string dir) => IO.AtomicFile.Write(path, s =>
    {
        using var w = new Utf8JsonWriter(s, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        foreach (var i in items) w.WriteNumber(Path.GetRelativePath(dir, Path.GetFullPath(i.Path)).Replace(Path.DirectorySeparatorChar, '/'), i.Label);
        w.WriteEndObject();
    });

    static string Root(string from, string name, string marker)
    {
        if (File.Exists(Path.Combine(from, marker))) return from;
        var hit = Directory.EnumerateFiles(from, marker, SearchOption.AllDirectories).Order(StringComparer.Ordinal).FirstOrDefault();
        return hit is not null ? Path.GetDirectoryName(hit)! : throw new InputFileException(from, $"no {marker} under it, so it is not the extracted {name} release", "release-folder");
    }

    static Dictionary<string, string> Pairs(string path) => File.ReadAllLines(path).Where(l => l.Trim().Length > 0).Select(l =>
    {
        int sp = l.IndexOf(' ');
        if (sp < 0) throw new InvalidDataException($"{path}: line '{l}' is not 'id value'");
        return (l[..sp], l[(sp + 1)..].Trim());
    }).ToDictionary(p => p.Item1, p => p.Item2);

    /// <summary>CUB-200-2011 and NABirds: images.txt (id path), image_class_labels.txt (id class), train_test_split.txt
    /// (id is_train), images/. Class ids map to 0..C−1 in ascending order (NABirds' ids are sparse), as the reference's
    /// JSON dataset does.</summary>
    static (List<Item>, List<Item>?, List<Item>) CubStyle(string from, string name)
    {
        string root = Root(from, name, "train_test_split.txt");
        var paths = Pairs(Path.Combine(root, "images.txt"));
        var labels = Pairs(Path.Combine(root, "image_class_labels.txt"));
        var split = Pairs(Path.Combine(root, "train_test_split.txt"));
        var ids = labels.Values.Select(int.Parse).Distinct().Order().ToList();
        var index = ids.Select((id, i) => (id, i)).ToDictionary(p => p.id, p => p.i);
        List<Item> train = [], test = [];
        foreach (var (id, rel) in paths)
        {
            if (!labels.TryGetValue(id, out var cls) || !split.TryGetValue(id, out var isTrain))
                throw new InvalidDataException($"{root}: image {id} has no class or split line");
            (isTrain == "1" ? train : test).Add(new Item(ArchiveChecks.Under(Path.Combine(root, "images"), rel, Path.Combine(root, "images.txt")), index[int.Parse(cls)]));
        }
        return (train, null, test);
    }

    /// <summary>Oxford Flowers 102: its official train / val / test (setid.mat), labels imagelabels.mat − 1.</summary>
    static (List<Item>, List<Item>?, List<Item>) Flowers(string from)
    {
        string root = Root(from, "Oxford Flowers 102", "setid.mat");
        var ids = MatFile.Read(File.ReadAllBytes(Path.Combine(root, "setid.mat")), "setid.mat");
        var labels = MatFile.Read(File.ReadAllBytes(Path.Combine(root, "imagelabels.mat")), "imagelabels.mat")["labels"];
        List<Item> Part(string key) => Enumerable.Range(0, (int)ids[key].Count).Select(i =>
        {
            int id = (int)ids[key].Number(i);
            return new Item(Path.Combine(root, "jpg", $"image_{id:D5}.jpg"), (int)labels.Number(id - 1) - 1);
        }).ToList();
        return (Part("trnid"), Part("valid"), Part("tstid"));
    }

    /// <summary>Stanford Dogs: lists/{train,test}_list.mat (file_list: paths under Images/, labels 1..120).</summary>
    static (List<Item>, List<Item>?, List<Item>) Dogs(string from)
    {
        string lists = Root(from, "Stanford Dogs lists", "train_list.mat");
        string images = Directory.EnumerateDirectories(from, "Images", SearchOption.AllDirectories).Prepend(Path.Combine(from, "Images")).FirstOrDefault(Directory.Exists)
            ?? throw new DirectoryNotFoundException($"{from}: no Images/ folder (Stanford Dogs images) under it");
        List<Item> Part(string file)
        {
            string path = Path.Combine(lists, file);
            var vars = MatFile.Read(File.ReadAllBytes(path), path);
            var files = vars.GetValueOrDefault("file_list") ?? throw new InvalidDataException($"{path}: no file_list variable");
            var labels = vars.GetValueOrDefault("labels") ?? throw new InvalidDataException($"{path}: no labels variable");
            return Enumerable.Range(0, files.Cells.Length).Select(i => new Item(ArchiveChecks.Under(images, files.Cells[i].Text(), path), (int)labels.Number(i) - 1)).ToList();
        }
        return (Part("train_list.mat"), null, Part("test_list.mat"));
    }

    /// <summary>Stanford Cars: cars_annos.mat (annotations: relative_im_path, class 1..196, test flag), or the devkit's
    /// cars_train_annos.mat + cars_test_annos_withlabels.mat (fname, class) with cars_train/ and cars_test/.</summary>
    static (List<Item>, List<Item>?, List<Item>) Cars(string from)
    {
        var all = Directory.EnumerateFiles(from, "cars_annos.mat", SearchOption.AllDirectories).FirstOrDefault();
        if (all is not null)
        {
            string root = Path.GetDirectoryName(all)!;
            var a = MatFile.Read(File.ReadAllBytes(all), all).GetValueOrDefault("annotations") ?? throw new InvalidDataException($"{all}: no annotations struct");
            List<Item> train = [], test = [];
            for (int i = 0; i < a.Count; i++)
                (a.Fields["test"][i].Number(0) != 0 ? test : train).Add(new Item(ArchiveChecks.Under(root, a.Fields["relative_im_path"][i].Text(), all), (int)a.Fields["class"][i].Number(0) - 1));
            return (train, null, test);
        }
        string devkit = Root(from, "Stanford Cars devkit", "cars_train_annos.mat");
        string trainDir = Directory.EnumerateDirectories(from, "cars_train", SearchOption.AllDirectories).FirstOrDefault()
            ?? throw new DirectoryNotFoundException($"{from}: no cars_train/ folder");
        string testDir = Directory.EnumerateDirectories(from, "cars_test", SearchOption.AllDirectories).FirstOrDefault()
            ?? throw new DirectoryNotFoundException($"{from}: no cars_test/ folder");
        List<Item> Part(string file, string images)
        {
            string path = Path.Combine(devkit, file);
            if (!File.Exists(path)) path = Directory.EnumerateFiles(from, file, SearchOption.AllDirectories).FirstOrDefault()
                ?? throw new FileNotFoundException($"{from}: no {file} (the test labels ship separately as cars_test_annos_withlabels.mat)");
            var a = MatFile.Read(File.ReadAllBytes(path), path).GetValueOrDefault("annotations") ?? throw new InvalidDataException($"{path}: no annotations struct");
            if (!a.Fields.ContainsKey("class")) throw new InvalidDataException($"{path}: annotations have no class field; use cars_test_annos_withlabels.mat");
            return Enumerable.Range(0, (int)a.Count).Select(i => new Item(ArchiveChecks.Under(images, a.Fields["fname"][i].Text(), path), (int)a.Fields["class"][i].Number(0) - 1)).ToList();
        }
        return (Part("cars_train_annos.mat", trainDir), null, Part("cars_test_annos_withlabels.mat", testDir));
    }
}
