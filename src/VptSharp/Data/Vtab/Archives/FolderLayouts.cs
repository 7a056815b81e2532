using System.Text.Json;

namespace VptSharp.Data.Vtab.Archives;

/// <summary>Image-folder releases: each split is a list of (image file, label) in a fixed order; images pass through
/// as stored (JPEG / PNG bytes), labels numbered as the TFDS builder numbers them.</summary>
public static class FolderLayouts
{
    static readonly string[] ImageExtensions = [".jpg", ".jpeg", ".png", ".tif", ".tiff"];

    static IVtabSource FromLists(string description, Dictionary<string, List<(string Path, long Label)>> splits,
        Func<(string Path, long Label), TfExample>? make = null) =>
        new FuncSource(description, splits.ToDictionary(kv => kv.Key, kv => kv.Value.Count),
            (split, start, end) => splits[split].Skip(start).Take(end - start).Select(make ?? Load));

    static TfExample Load((string Path, long Label) item)
    {
        if (!File.Exists(item.Path)) throw new FileNotFoundException($"{item.Path}: listed by the archive's split files but missing; extract the archive again");
        var ex = new TfExample();
        byte[] bytes = ImageDecoder.ReadImageFile(item.Path); // a regular file of image size: not a FIFO or a device
        ex.Bytes["image"] = [IsPngOrJpeg(bytes) ? bytes : Reencode(bytes, item.Path)];
        ex.Ints["label"] = [item.Label];
        return ex;
    }

    static bool IsPngOrJpeg(byte[] b) => b.Length > 4 && (b[0] == 0x89 && b[1] == (byte)'P' || b[0] == 0xFF && b[1] == 0xD8);

    /// <summary>Other formats (EuroSAT's and RESISC45's files are JPEG; anything else SkiaSharp decodes) become PNG.</summary>
    static byte[] Reencode(byte[] bytes, string path) => MiniSuite.MiniSuiteWriter.EncodePng(FileImageDataset.Decode(bytes, path));

    static string Dir(string root, string name, string what)
    {
        if (Path.GetFileName(Path.TrimEndingDirectorySeparator(root)).Equals(name, StringComparison.OrdinalIgnoreCase) && Directory.Exists(root)) return root;
        var hit = Directory.EnumerateDirectories(root, name, SearchOption.AllDirectories).Order(StringComparer.Ordinal).FirstOrDefault();
        return hit ?? throw new InputFileException(root, $"no {name}/ folder ({what}) under it", "release-folder");
    }

    /// <summary>DTD: labels/{train1,val1,test1}.txt ("class/file.jpg" per line: fold 1, as TFDS dtd), images under images/;
    /// label = index of the class in the sorted list of the 47 class folders.</summary>
    public static IVtabSource Dtd(string root)
    {
        string labels = Dir(root, "labels", "DTD's split lists"), images = Path.Combine(Path.GetDirectoryName(labels)!, "images");
        var classes = Directory.GetDirectories(images).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        var splits = new Dictionary<string, List<(string, long)>>();
        foreach (var (split, file) in new[] { ("train", "train1.txt"), ("validation", "val1.txt"), ("test", "test1.txt") })
        {
            string path = Path.Combine(labels, file);
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: missing; DTD's labels/ folder holds train1.txt, val1.txt and test1.txt");
            splits[split] = File.ReadAllLines(path).Where(l => l.Trim().Length > 0).Select(l =>
            {
                string rel = l.Trim(), cls = rel.Split('/')[0];
                int label = classes.IndexOf(cls);
                if (label < 0) throw new InvalidDataException($"{path}: class '{cls}' has no folder under {images}");
                return (ArchiveChecks.Under(images, rel, path), (long)label);
            }).ToList();
        }
        return FromLists($"DTD in {Path.GetDirectoryName(labels)}", splits);
    }

    /// <summary>Oxford-IIIT Pet: annotations/{trainval,test}.txt ("name class-id species breed-id"); label = class id − 1; image images/name.jpg.</summary>
    public static IVtabSource Pets(string root)
    {
        string ann = Dir(root, "annotations", "the Pet annotations"), images = Dir(root, "images", "the Pet images");
        var splits = new Dictionary<string, List<(string, long)>>();
        foreach (var (split, file) in new[] { ("train", "trainval.txt"), ("test", "test.txt") })
        {
            string path = Path.Combine(ann, file);
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: missing; the annotations archive holds trainval.txt and test.txt");
            splits[split] = File.ReadAllLines(path).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(l =>
            {
                var f = l.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length < 2 || !long.TryParse(f[1], out long id)) throw new InvalidDataException($"{path}: line '{l}' is not 'name class-id species breed-id'");
                return (ArchiveChecks.Under(images, f[0] + ".jpg", path), id - 1);
            }).ToList();
        }
        return FromLists($"Oxford-IIIT Pet in {Path.GetDirectoryName(ann)}", splits);
    }

    /// <summary>Oxford Flowers 102: setid.mat (trnid, valid, tstid: 1-based image ids), imagelabels.mat (labels 1..102);
    /// TFDS label = label − 1; images jpg/image_NNNNN.jpg.</summary>
    public static IVtabSource Flowers102(string root)
    {
        string setid = ArchiveSources.Find(root, "setid.mat", "the Flowers split ids"), labelsPath = ArchiveSources.Find(root, "imagelabels.mat", "the Flowers labels");
        string jpg = Dir(root, "jpg", "the Flowers images");
        var ids = MatFile.Read(ArchiveSources.ReadAllMaybeGz(setid), setid);
        var labels = MatFile.Read(ArchiveSources.ReadAllMaybeGz(labelsPath), labelsPath).GetValueOrDefault("labels")
            ?? throw new InvalidDataException($"{labelsPath}: no 'labels' variable");
        var splits = new Dictionary<string, List<(string, long)>>();
        foreach (var (split, key) in new[] { ("train", "trnid"), ("validation", "valid"), ("test", "tstid") })
        {
            var v = ids.GetValueOrDefault(key) ?? throw new InvalidDataException($"{setid}: no '{key}' variable (has {string.Join(", ", ids.Keys)})");
            splits[split] = Enumerable.Range(0, (int)v.Count).Select(i =>
            {
                int id = (int)v.Number(i);
                if (id < 1 || id > labels.Count) throw new InvalidDataException($"{setid}: image id {id} outside 1..{labels.Count}");
                return (Path.Combine(jpg, $"image_{id:D5}.jpg"), (long)labels.Number(id - 1) - 1);
            }).ToList();
        }
        return FromLists($"Oxford Flowers 102 in {Path.GetDirectoryName(jpg)}", splits);
    }

    /// <summary>A folder of class folders as one "train" split (EuroSAT RGB, RESISC45): classes in sorted order (TFDS's
    /// class-name order for both), files in sorted order within a class, classes one after another.</summary>
    public static IVtabSource ClassFolders(string root, string what, int expectedClasses)
    {
        var candidates = new[] { root }.Concat(Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal));
        string? dir = candidates.FirstOrDefault(d => Directory.GetDirectories(d).Length == expectedClasses);
        if (dir is null) throw new InputFileException(root, $"no folder with {expectedClasses} class folders ({what}) under it", "release-folder");
        var classes = Directory.GetDirectories(dir).Order(StringComparer.Ordinal).ToList();
        var items = classes.SelectMany((c, label) => Directory.GetFiles(c).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .Order(StringComparer.Ordinal).Select(f => (f, (long)label))).ToList();
        return FromLists($"{what} class folders in {dir}", new() { ["train"] = items });
    }

    /// <summary>Caltech-101: 101_ObjectCategories/&lt;class&gt;/ (102 folders with BACKGROUND_Google), classes sorted
    /// case-insensitively (TFDS's lower-cased names). TFDS picks 30 train images per class at random; here the first 30
    /// files (by name) per class form "train" and the rest "test" — same sizes, not the same images.</summary>
    public static IVtabSource Caltech101(string root)
    {
        string dir = Dir(root, "101_ObjectCategories", "Caltech-101 images");
        var classes = Directory.GetDirectories(dir).OrderBy(d => Path.GetFileName(d).ToLowerInvariant(), StringComparer.Ordinal).ToList();
        if (classes.Count != 102) throw new InvalidDataException($"{dir}: {classes.Count} class folders, expected 102 (101 categories + BACKGROUND_Google)");
        var train = new List<(string, long)>();
        var test = new List<(string, long)>();
        for (int label = 0; label < classes.Count; label++)
        {
            var files = Directory.GetFiles(classes[label]).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal).ToList();
            train.AddRange(files.Take(30).Select(f => (f, (long)label)));
            test.AddRange(files.Skip(30).Select(f => (f, (long)label)));
        }
        return FromLists($"Caltech-101 in {dir}", new() { ["train"] = train, ["test"] = test });
    }

    /// <summary>CLEVR v1.0: scenes/CLEVR_{train,val}_scenes.json give each image's objects (size, shape, pixel_coords);
    /// TFDS "train" = CLEVR train and "validation" = CLEVR val, in image-index order.</summary>
    public static IVtabSource Clevr(string root)
    {
        string scenes = Dir(root, "scenes", "CLEVR scene annotations"), images = Path.Combine(Path.GetDirectoryName(scenes)!, "images");
        var splits = new Dictionary<string, List<(string Image, long[] Sizes, float[] Coords)>>();
        foreach (var (split, name) in new[] { ("train", "train"), ("validation", "val") })
        {
            string path = Path.Combine(scenes, $"CLEVR_{name}_scenes.json");
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: missing; CLEVR_v1.0/scenes/ holds CLEVR_train_scenes.json and CLEVR_val_scenes.json");
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var list = new List<(string, long[], float[])>();
            foreach (var scene in doc.RootElement.GetProperty("scenes").EnumerateArray().OrderBy(s => s.GetProperty("image_index").GetInt32()))
            {
                var objects = scene.GetProperty("objects").EnumerateArray().ToList();
                list.Add((ArchiveChecks.Under(Path.Combine(images, name), scene.GetProperty("image_filename").GetString()!, path),
                    objects.Select(o => o.GetProperty("size").GetString() == "large" ? 1L : 0L).ToArray(),
                    objects.SelectMany(o => o.GetProperty("pixel_coords").EnumerateArray().Select(v => v.GetSingle())).ToArray()));
            }
            splits[split] = list;
        }
        return new FuncSource($"CLEVR in {Path.GetDirectoryName(scenes)}", splits.ToDictionary(kv => kv.Key, kv => kv.Value.Count),
            (split, start, end) => splits[split].Skip(start).Take(end - start).Select(s =>
            {
                var ex = Load((s.Image, 0));
                ex.Ints.Remove("label");
                ex.Ints["objects/size"] = [.. s.Sizes];
                ex.Floats["objects/pixel_coords"] = [.. s.Coords];
                return ex;
            }));
    }
}
