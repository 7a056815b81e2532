// The ML.NET peer of VptSharp's resnet18-imagenet (issue 12): what a .NET user already has offline. Fashion-MNIST images
// (the same slices VptSharp's `fashion-mnist:train[A:B]` / `fashion-mnist:test[A:B]` specs read) go through ML.NET's
// own image pipeline — ResizeImages 224 → ExtractPixels → DnnFeaturizeImage(ResNet18), the documented recipe — and a
// multiclass linear trainer. Prints one JSON object: accuracies, featurization images/s, CPU and load.
//
//   mlnet-peer --train 0:800 --test 0:1000 [--data /usr/share/datasets/fashion-mnist] [--out result.json]
//   mlnet-peer --train-list task/train800val200.txt --test-list task/test.txt [--out result.json]
//     (a task in VptSharp's list layout, "relative/path.png label" per line, as `vpt data make` and VTAB-1k lists write it)
using System.Diagnostics;
using System.IO.Compression;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

// Bad input (a missing list file, an undecodable image, an unknown option) ends in one line and exit code 1.
AppDomain.CurrentDomain.UnhandledException += (_, e) =>
{
    Console.Error.WriteLine($"error: {(e.ExceptionObject as Exception)?.Message.ReplaceLineEndings(" ") ?? e.ExceptionObject}");
    Environment.Exit(1);
};
var opts = Args.Parse(args);
var ml = new MLContext(seed: 0);
string[] names = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"];

var train = opts.TrainList is string tl ? ImageList.Read(tl) : FashionMnist.Read(opts.Data, "train", opts.Train.Start, opts.Train.End, names);
var test = opts.TestList is string sl ? ImageList.Read(sl) : FashionMnist.Read(opts.Data, "t10k", opts.Test.Start, opts.Test.End, names);

// The featurizer exactly as ML.NET's docs build it (224 × 224 RGB floats 0–255 into the package's preprocessing graph).
var featurizer = ml.Transforms.ResizeImages("Resized", 224, 224, nameof(Sample.Image))
    .Append(ml.Transforms.ExtractPixels("Pixels", "Resized"))
    .Append(ml.Transforms.DnnFeaturizeImage("Features", m => m.ModelSelector.ResNet18(ml, m.OutputColumn, m.InputColumn), "Pixels"));
var fitted = featurizer.Fit(ml.Data.LoadFromEnumerable(train.Take(1)));

// Warm-up (ONNX Runtime's first run allocates and plans), then timed featurization of train and test.
Featurize(fitted, train.Take(4).ToList());
var clock = Stopwatch.StartNew();
var trainFeatures = Featurize(fitted, train);
var testFeatures = Featurize(fitted, test);
double featurizeSeconds = clock.Elapsed.TotalSeconds;
int featurized = train.Count + test.Count;

var trainers = new List<object>();
foreach (var (name, estimator) in new (string, IEstimator<ITransformer>)[]
{
    // The trainer the issue names, on the raw 512-d features (as ML.NET's image-classification sample does).
    ("LbfgsMaximumEntropy", ml.Transforms.Conversion.MapValueToKey("Label")
        .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy("Label", "Features"))),
    // SDCA wants normalised features; Model Builder puts NormalizeMinMax before it.
    ("SdcaMaximumEntropy (min-max normalised)", ml.Transforms.Conversion.MapValueToKey("Label")
        .Append(ml.Transforms.NormalizeMinMax("Features"))
        .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy("Label", "Features"))),
})
{
    var t = Stopwatch.StartNew();
    var model = estimator.Fit(ml.Data.LoadFromEnumerable(trainFeatures));
    double fitSeconds = t.Elapsed.TotalSeconds;
    var metrics = ml.MulticlassClassification.Evaluate(model.Transform(ml.Data.LoadFromEnumerable(testFeatures)), "Label");
    trainers.Add(new { trainer = name, top1 = metrics.MicroAccuracy, macro_accuracy = metrics.MacroAccuracy, log_loss = metrics.LogLoss, fit_seconds = fitSeconds });
    Console.Error.WriteLine($"{name}: top-1 {metrics.MicroAccuracy:P2} on {test.Count} test images (fit {fitSeconds:F1} s)");
}

var result = new
{
    peer = "ML.NET 5.0.1 DnnImageFeaturizer ResNet18 0.23.1 (ONNX Runtime 1.31.1)",
    train = opts.TrainList ?? $"fashion-mnist:train[{opts.Train.Start}:{opts.Train.End}]", test = opts.TestList ?? $"fashion-mnist:test[{opts.Test.Start}:{opts.Test.End}]",
    train_count = train.Count, test_count = test.Count,
    featurize_seconds = featurizeSeconds, featurize_images_per_second = featurized / featurizeSeconds,
    trainers,
    cpu = Machine.CpuModel(), cpu_flags = Machine.VectorFlags(), load_average = Machine.LoadAverage(), processors = Environment.ProcessorCount,
    finished_utc = DateTime.UtcNow.ToString("O"),
};
string json = JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true });
if (opts.Out is string outPath)
{
    File.WriteAllText(outPath + ".tmp", json);
    File.Move(outPath + ".tmp", outPath, overwrite: true);
}
Console.WriteLine(json);
return 0;

/// <summary>Runs the featurizer over the samples and materialises the 512-d features (the timed part).</summary>
static List<Featurized> Featurize(ITransformer fitted, List<Sample> samples)
{
    var ml = new MLContext(seed: 0);
    var view = fitted.Transform(ml.Data.LoadFromEnumerable(samples));
    return ml.Data.CreateEnumerable<Featurized>(view, reuseRowObject: false).ToList();
}

sealed class Sample
{
    [ImageType(28, 28)] public MLImage Image { get; set; } = null!;
    public string Label { get; set; } = "";
}

sealed class Featurized
{
    [VectorType(512)] public float[] Features { get; set; } = [];
    public string Label { get; set; } = "";
}

static class FashionMnist
{
    /// <summary>Images [start, end) of the gzipped IDX files (Debian's dataset-fashion-mnist), grey replicated to BGRA.</summary>
    public static List<Sample> Read(string dir, string split, int start, int end, string[] names)
    {
        byte[] images = Gunzip(Path.Combine(dir, $"{split}-images-idx3-ubyte.gz"));
        byte[] labels = Gunzip(Path.Combine(dir, $"{split}-labels-idx1-ubyte.gz"));
        int count = BigEndian(images, 4), rows = BigEndian(images, 8), cols = BigEndian(images, 12);
        if (start < 0 || end > count || start >= end) throw new ArgumentException($"{split}: slice {start}:{end} outside 0:{count}");
        var list = new List<Sample>();
        for (int i = start; i < end; i++)
        {
            var bgra = new byte[rows * cols * 4];
            for (int p = 0; p < rows * cols; p++)
            {
                byte g = images[16 + i * rows * cols + p];
                bgra[4 * p] = g; bgra[4 * p + 1] = g; bgra[4 * p + 2] = g; bgra[4 * p + 3] = 255;
            }
            list.Add(new Sample { Image = MLImage.CreateFromPixels(cols, rows, MLPixelFormat.Bgra32, bgra), Label = names[labels[8 + i]] });
        }
        return list;
    }

    static int BigEndian(byte[] b, int at) => (b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3];

    static byte[] Gunzip(string path)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }
}

static class ImageList
{
    /// <summary>"relative/path label" lines, paths relative to the list file's folder; each image decoded by ML.NET.</summary>
    public static List<Sample> Read(string listPath)
    {
        string root = Path.GetDirectoryName(Path.GetFullPath(listPath))!;
        return File.ReadLines(listPath).Where(l => l.Trim().Length > 0).Select((line, n) =>
        {
            int cut = line.LastIndexOf(' ');
            if (cut <= 0 || !int.TryParse(line[(cut + 1)..], out int label))
                throw new ArgumentException($"{listPath}:{n + 1}: expected 'relative/path label'");
            string image = Path.Combine(root, line[..cut]);
            try { return new Sample { Image = MLImage.CreateFromFile(image), Label = label.ToString() }; }
            catch (Exception e) { throw new ArgumentException($"{image} (line {n + 1} of {listPath}): not a readable image ({e.Message}); replace or remove it", e); }
        }).ToList();
    }
}

static class Machine
{
    public static string CpuModel() => CpuInfo().FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown";

    /// <summary>The vector extensions that decide the kernels: avx2, avx512f, avx512_bf16, amx_bf16.</summary>
    public static string VectorFlags()
    {
        var flags = (CpuInfo().FirstOrDefault(l => l.StartsWith("flags"))?.Split(':', 2)[1] ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        return string.Join(" ", new[] { "avx2", "avx512f", "avx512_bf16", "amx_bf16" }.Where(flags.Contains));
    }

    public static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

    static string[] CpuInfo() => File.Exists("/proc/cpuinfo") ? File.ReadAllLines("/proc/cpuinfo") : [];
}

sealed record Slice(int Start, int End)
{
    public static Slice Parse(string s, string option)
    {
        var p = s.Split(':');
        if (p.Length != 2 || !int.TryParse(p[0], out int a) || !int.TryParse(p[1], out int b))
            throw new ArgumentException($"{option} {s}: expected START:END, e.g. 0:800");
        return new Slice(a, b);
    }
}

sealed record Args(string Data, Slice Train, Slice Test, string? Out, string? TrainList, string? TestList)
{
    public static Args Parse(string[] args)
    {
        string data = "/usr/share/datasets/fashion-mnist";
        Slice train = new(0, 800), test = new(0, 1000);
        string? output = null, trainList = null, testList = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--data": data = Next(); break;
                case "--train": train = Slice.Parse(Next(), "--train"); break;
                case "--test": test = Slice.Parse(Next(), "--test"); break;
                case "--out": output = Next(); break;
                case "--train-list": trainList = Next(); break;
                case "--test-list": testList = Next(); break;
                default: throw new ArgumentException($"unknown option {args[i]}; use --data DIR --train A:B --test A:B, or --train-list FILE --test-list FILE; --out FILE");
            }
        }
        if ((trainList is null) != (testList is null)) throw new ArgumentException("--train-list and --test-list go together");
        return new Args(data, train, test, output, trainList, testList);
    }
}
