namespace VptSharp.Data.Segmentation;

/// <summary>One image and its label mask.</summary>
public sealed record SegmentationSample(string ImagePath, string MaskPath);

/// <summary>
/// A segmentation split: image / label-mask pairs, class names, and how stored mask values become labels. Two layouts:
/// <list type="bullet">
/// <item>ADE20K (ADEChallengeData2016): <c>ROOT/images/{training,validation}/*.jpg</c> + <c>ROOT/annotations/…/*.png</c>;
/// 150 classes, stored value 0 = "other" → ignored, value v → class v − 1 (mmseg's reduce_zero_label).</item>
/// <item>Image / mask pairs: <c>DIR/images/*</c> + <c>DIR/masks/&lt;stem&gt;.png</c> (value = class, 255 = ignore),
/// class names one per line in <c>classes.txt</c> in DIR or its parent (what <c>vpt data make seg-shapes</c> writes).</item>
/// </list>
/// </summary>
public sealed class SegmentationDataset
{
    public string Source { get; }
    public IReadOnlyList<string> Classes { get; }
    public bool ReduceZeroLabel { get; }
    public IReadOnlyList<SegmentationSample> Samples { get; }

    public SegmentationDataset(string source, IReadOnlyList<string> classes, bool reduceZeroLabel, IReadOnlyList<SegmentationSample> samples)
    {
        if (classes.Count < 1 || classes.Count > 255)
            throw new InputFileException(source, $"{classes.Count} classes; segmentation takes 1..255 (label 255 means ignore)", "data");
        if (samples.Count == 0) throw new InputFileException(source, "no image / mask pairs found", "data");
        Source = source; Classes = classes; ReduceZeroLabel = reduceZeroLabel; Samples = samples;
    }

    public int Count => Samples.Count;

    static readonly string[] ImageExtensions = [".jpg", ".jpeg", ".png", ".bmp", ".webp"];

    /// <summary>
    /// <c>ade20k:ROOT[:training|validation]</c>, an ADE20K root (<paramref name="split"/> picks the sub-folder, default
    /// training), or a pairs folder. <paramref name="reduceZeroLabel"/> overrides the layout's default.
    /// </summary>
    public static SegmentationDataset Open(string spec, string? split = null, bool? reduceZeroLabel = null)
    {
        string root = spec;
        bool ade = false;
        if (spec.StartsWith("ade20k:", StringComparison.OrdinalIgnoreCase))
        {
            ade = true;
            root = spec["ade20k:".Length..];
            int colon = root.LastIndexOf(':');
            if (colon > 0 && root[(colon + 1)..] is "training" or "validation") { split = root[(colon + 1)..]; root = root[..colon]; }
        }
        if (!Directory.Exists(root)) throw new InputFileException(root, "segmentation data folder not found", "data");
        if (ade || Directory.Exists(Path.Combine(root, "annotations")))
            return OpenAde20k(root, split ?? "training", reduceZeroLabel ?? true);
        return OpenPairs(root, reduceZeroLabel ?? false);
    }

    static SegmentationDataset OpenAde20k(string root, string split, bool reduce)
    {
        if (split is not ("training" or "validation"))
            throw new InvalidSettingException("split", split, "ADE20K splits are training and validation");
        string images = Path.Combine(root, "images", split), annotations = Path.Combine(root, "annotations", split);
        if (!Directory.Exists(images)) throw new InputFileException(images, "not found: an ADE20K root holds images/{training,validation} and annotations/{training,validation}", "data");
        if (!Directory.Exists(annotations)) throw new InputFileException(annotations, "not found: an ADE20K root holds images/{training,validation} and annotations/{training,validation}", "data");
        return new SegmentationDataset($"{root} ({split})", Ade20k.Classes, reduce, Pair(images, annotations));
    }

    static SegmentationDataset OpenPairs(string dir, bool reduce)
    {
        string images = Path.Combine(dir, "images"), masks = Path.Combine(dir, "masks");
        if (!Directory.Exists(images) || !Directory.Exists(masks))
            throw new InputFileException(dir, "not a segmentation folder: expected images/ and masks/ (or an ADE20K root with images/ and annotations/)", "data");
        string? classFile = new[] { Path.Combine(dir, "classes.txt"), Path.Combine(Path.GetDirectoryName(Path.GetFullPath(dir))!, "classes.txt") }
            .FirstOrDefault(File.Exists);
        if (classFile is null) throw new InputFileException(Path.Combine(dir, "classes.txt"), "not found: list the class names, one per line (line k = label k)", "data");
        var classes = File.ReadAllLines(classFile).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        if (classes.Length > 255) throw new InputFileException(classFile, $"{classes.Length} class names; segmentation takes at most 255", "data");
        return new SegmentationDataset(dir, classes, reduce, Pair(images, masks));
    }

    static List<SegmentationSample> Pair(string images, string masks)
    {
        var list = new List<SegmentationSample>();
        foreach (var img in Directory.EnumerateFiles(images).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal))
        {
            string mask = Path.Combine(masks, Path.GetFileNameWithoutExtension(img) + ".png");
            if (!File.Exists(mask)) throw new InputFileException(mask, $"no mask for image {img}: each image needs <stem>.png in {masks}", "data");
            list.Add(new SegmentationSample(img, mask));
        }
        return list;
    }

    /// <summary>The decoded image and its labels (reduce-zero-label applied), checked: same size, every label a class or 255.</summary>
    public (RgbImage Image, LabelMask Mask) Load(int index)
    {
        var s = Samples[index];
        var mask = LabelMaskCodec.DecodeFile(s.MaskPath);
        var bytes = ReadImageBytes(s.ImagePath);
        var (w, h) = ImageDecoder.ReadSize(bytes, s.ImagePath);
        if (w != mask.Width || h != mask.Height)
            throw new InvalidDataException($"{s.MaskPath}: mask is {mask.Width}×{mask.Height} but its image {Path.GetFileName(s.ImagePath)} is {w}×{h}; masks must have their image's size");
        var image = ImageDecoder.Decode(bytes, s.ImagePath);
        var labels = ToLabels(mask, s.MaskPath);
        // A very large image is box-reduced while decoding; its labels follow by nearest neighbour.
        return (image, labels.Resize(image.Width, image.Height));
    }

    /// <summary>Stored values → labels (reduce-zero-label: 0 → ignore, v → v − 1), refusing values that are no class.</summary>
    public LabelMask ToLabels(LabelMask stored, string name)
    {
        var dst = new byte[stored.Labels.Length];
        int c = Classes.Count;
        for (int i = 0; i < dst.Length; i++)
        {
            int v = stored.Labels[i];
            int label = !ReduceZeroLabel ? v : v == 0 || v == 255 ? 255 : v - 1;
            if (label != LabelMask.Ignore && label >= c)
                throw new InputFileException(name, $"value {v} at pixel ({i % stored.Width}, {i / stored.Width}) is label {label}, out of range for {c} classes (0..{c - 1}, 255 = ignore)",
                    ReduceZeroLabel ? null : "reduce-zero-label"); // the CLI suggests the flag when it is off
            dst[i] = (byte)label;
        }
        return stored with { Labels = dst };
    }

    static byte[] ReadImageBytes(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new BadImageException(path, "image file not found");
        if (info.Length == 0) throw new BadImageException(path, "empty or not a regular file");
        if (info.Length > ImageDecoder.MaxFileBytes) throw new BadImageException(path, $"{info.Length:N0} bytes, over the {ImageDecoder.MaxFileBytes:N0}-byte image file limit");
        return File.ReadAllBytes(path);
    }
}

/// <summary>ADE20K's 150 SceneParsing classes in label order (ADEChallengeData2016 objectInfo150; stored value = index + 1).</summary>
public static class Ade20k
{
    public static readonly IReadOnlyList<string> Classes =
    [
        "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet", "sidewalk",
        "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting", "sofa",
        "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
        "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
        "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
        "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill",
        "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
        "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
        "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
        "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
        "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food",
        "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
        "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
        "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
    ];
}
