namespace VptSharp.Data.Vtab;

/// <summary>
/// One VTAB-1k task: where its examples come from (a TFDS dataset), how VTAB cuts train800 / val200 / test out of the
/// source splits, and how an example's label is computed. Split strings and label functions are those of
/// google-research/task_adaptation (task_adaptation/data/*.py), which KMnP/vpt copies into src/data/vtab_datasets/.
/// </summary>
public sealed record VtabTask
{
    /// <summary>The task's name in suites/vtab-1k.json (and the output folder).</summary>
    public required string Name { get; init; }
    public required string Group { get; init; }
    public required int Classes { get; init; }
    /// <summary>TFDS builder folder under the data dir ("cifar100", "eurosat/rgb", "diabetic_retinopathy_detection/btgraham-300").</summary>
    public required string Tfds { get; init; }
    /// <summary>Preferred TFDS version folder (the one VTAB pins), else the highest present.</summary>
    public string? Version { get; init; }
    /// <summary>TFDS split strings for train800, val200 and test, from the source split sizes.</summary>
    public required Func<IReadOnlyDictionary<string, int>, (string Train800, string Val200, string Test)> Splits { get; init; }
    public required Func<TfExample, int> Label { get; init; }
    /// <summary>Stored pixel values are 0/1 and VTAB multiplies them by 255 (dSprites).</summary>
    public bool BinaryImage { get; init; }
    /// <summary>The task_adaptation file that defines it.</summary>
    public required string Source { get; init; }
}

public static class VtabTasks
{
    /// <summary>"train[:800]", "train[k:k+200]", test: VTAB's split for datasets with only train/test, where the val200
    /// comes from just after the first <paramref name="percent"/>% of train (k = percent·N // 100).</summary>
    static Func<IReadOnlyDictionary<string, int>, (string, string, string)> PercentOfTrain(int percent, string test = "test") => sizes =>
    {
        int k = percent * Size(sizes, "train") / 100;
        return ("train[:800]", $"train[{k}:{k + 200}]", test);
    };

    /// <summary>Datasets with their own validation split: train[:800], validation[:200], test.</summary>
    static readonly Func<IReadOnlyDictionary<string, int>, (string, string, string)> WithValidation =
        _ => ("train[:800]", "validation[:200]", "test");

    /// <summary>EuroSAT / RESISC45: only a train split, cut 60 / 20 / 20 %.</summary>
    static (string, string, string) SixtyTwentyTwenty(IReadOnlyDictionary<string, int> sizes)
    {
        int n = Size(sizes, "train"), t = n * 60 / 100, v = n * 20 / 100;
        return ("train[:800]", $"train[{t}:{t + 200}]", $"train[{t + v}:]");
    }

    /// <summary>dSprites: only a train split, cut 80 / 10 / 10 %.</summary>
    static (string, string, string) Dsprites(IReadOnlyDictionary<string, int> sizes)
    {
        int n = Size(sizes, "train"), t = 80 * n / 100, v = 10 * n / 100;
        return ("train[:800]", $"train[{t}:{t + 200}]", $"train[{t + v}:]");
    }

    static int Size(IReadOnlyDictionary<string, int> sizes, string split) => sizes.TryGetValue(split, out int n) ? n
        : throw new InvalidDataException($"the source has no '{split}' split (it has: {string.Join(", ", sizes.Keys)})");

    static int Plain(TfExample e) => (int)e.IntOf("label");

    /// <summary>The largest i with thresholds[i] &lt; value (task_adaptation's tf.reduce_max(tf.where(thrs - x &lt; 0))).</summary>
    public static int Bin(double value, double[] thresholds)
    {
        int label = -1;
        for (int i = 0; i < thresholds.Length; i++) if (thresholds[i] - value < 0) label = i;
        if (label < 0) throw new InvalidDataException($"value {value} lies below every bin threshold");
        return label;
    }

    /// <summary>clevr.py _closest_object_preprocess_fn: the smallest depth (pixel_coords[:, 2]) binned at 0, 8, 8.5, 9, 9.5, 10, 100.</summary>
    public static int ClevrClosestDistance(TfExample e)
    {
        var c = e.FloatsOf("objects/pixel_coords");
        if (c.Count == 0 || c.Count % 3 != 0) throw new InvalidDataException($"objects/pixel_coords has {c.Count} values, not 3 per object");
        double min = double.MaxValue;
        for (int i = 2; i < c.Count; i += 3) min = Math.Min(min, c[i]);
        return Bin(min, [0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0]);
    }

    /// <summary>clevr.py _count_preprocess_fn: number of objects − 3 (CLEVR scenes hold 3–10).</summary>
    public static int ClevrCount(TfExample e) => e.IntsOf("objects/size").Count - 3;

    /// <summary>kitti.py _closest_vehicle_distance_pp: the smallest depth (location[:, 2]) among Car / Van / Truck
    /// (type &lt; 3), 1000 when there is none, binned at −100, 8, 20, 999.</summary>
    public static int KittiClosestVehicle(TfExample e)
    {
        var types = e.IntsOf("objects/type");
        var loc = e.FloatsOf("objects/location");
        if (loc.Count != 3 * types.Count) throw new InvalidDataException($"objects/location has {loc.Count} values for {types.Count} objects");
        double min = 1000.0;
        for (int i = 0; i < types.Count; i++) if (types[i] < 3) min = Math.Min(min, loc[3 * i + 2]);
        return Bin(min, [-100.0, 8.0, 20.0, 999.0]);
    }

    /// <summary>dsprites.py: floor(class / (original classes / 16)) — x position 32 → 16 bins, orientation 40 → 16.</summary>
    public static Func<TfExample, int> DspritesBins(string attribute, int originalClasses) =>
        e => (int)Math.Floor(e.IntOf(attribute) / ((double)originalClasses / 16));

    public static readonly IReadOnlyList<VtabTask> All =
    [
        new() { Name = "cifar", Group = "Natural", Classes = 100, Tfds = "cifar100", Splits = PercentOfTrain(90), Label = Plain, Source = "cifar.py (num_classes=100)" },
        new() { Name = "caltech101", Group = "Natural", Classes = 102, Tfds = "caltech101", Splits = PercentOfTrain(90), Label = Plain, Source = "caltech.py" },
        new() { Name = "dtd", Group = "Natural", Classes = 47, Tfds = "dtd", Splits = WithValidation, Label = Plain, Source = "dtd.py" },
        new() { Name = "oxford_flowers102", Group = "Natural", Classes = 102, Tfds = "oxford_flowers102", Splits = WithValidation, Label = Plain, Source = "oxford_flowers102.py" },
        new() { Name = "oxford_iiit_pet", Group = "Natural", Classes = 37, Tfds = "oxford_iiit_pet", Splits = PercentOfTrain(80), Label = Plain, Source = "oxford_iiit_pet.py" },
        new() { Name = "svhn", Group = "Natural", Classes = 10, Tfds = "svhn_cropped", Splits = PercentOfTrain(90), Label = Plain, Source = "svhn.py" },
        new() { Name = "sun397", Group = "Natural", Classes = 397, Tfds = "sun397/tfds", Splits = WithValidation, Label = Plain, Source = "sun397.py (config tfds)" },
        new() { Name = "patch_camelyon", Group = "Specialized", Classes = 2, Tfds = "patch_camelyon", Splits = WithValidation, Label = Plain, Source = "patch_camelyon.py" },
        new() { Name = "eurosat", Group = "Specialized", Classes = 10, Tfds = "eurosat/rgb", Splits = SixtyTwentyTwenty, Label = Plain, Source = "eurosat.py (subset rgb)" },
        new() { Name = "resisc45", Group = "Specialized", Classes = 45, Tfds = "resisc45", Splits = SixtyTwentyTwenty, Label = Plain, Source = "resisc45.py" },
        new() { Name = "diabetic_retinopathy", Group = "Specialized", Classes = 5, Tfds = "diabetic_retinopathy_detection/btgraham-300", Splits = WithValidation, Label = Plain, Source = "diabetic_retinopathy.py (config btgraham-300)" },
        new() { Name = "clevr_count", Group = "Structured", Classes = 8, Tfds = "clevr", Splits = PercentOfTrain(90, test: "validation"), Label = ClevrCount, Source = "clevr.py (task count_all)" },
        new() { Name = "clevr_dist", Group = "Structured", Classes = 6, Tfds = "clevr", Splits = PercentOfTrain(90, test: "validation"), Label = ClevrClosestDistance, Source = "clevr.py (task closest_object_distance)" },
        new() { Name = "dmlab", Group = "Structured", Classes = 6, Tfds = "dmlab", Version = "2.0.1", Splits = WithValidation, Label = Plain, Source = "dmlab.py" },
        new() { Name = "kitti", Group = "Structured", Classes = 4, Tfds = "kitti", Version = "3.2.0", Splits = WithValidation, Label = KittiClosestVehicle, Source = "kitti.py (task closest_vehicle_distance)" },
        new() { Name = "dsprites_loc", Group = "Structured", Classes = 16, Tfds = "dsprites", Splits = Dsprites, Label = DspritesBins("label_x_position", 32), BinaryImage = true, Source = "dsprites.py (label_x_position, num_classes=16)" },
        new() { Name = "dsprites_ori", Group = "Structured", Classes = 16, Tfds = "dsprites", Splits = Dsprites, Label = DspritesBins("label_orientation", 40), BinaryImage = true, Source = "dsprites.py (label_orientation, num_classes=16)" },
        new() { Name = "smallnorb_azi", Group = "Structured", Classes = 18, Tfds = "smallnorb", Splits = _ => ("train[:800]", "test[:200]", "test[50%:]"), Label = e => (int)e.IntOf("label_azimuth"), Source = "smallnorb.py (label_azimuth)" },
        new() { Name = "smallnorb_ele", Group = "Structured", Classes = 9, Tfds = "smallnorb", Splits = _ => ("train[:800]", "test[:200]", "test[50%:]"), Label = e => (int)e.IntOf("label_elevation"), Source = "smallnorb.py (label_elevation)" },
    ];

    public static VtabTask Get(string name) => All.FirstOrDefault(t => t.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown VTAB-1k task '{name}'; the 19 tasks: {string.Join(", ", All.Select(t => t.Name))}");
}
