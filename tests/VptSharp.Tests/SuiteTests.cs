using System.Text.Json;
using VptSharp.Data;
using VptSharp.Data.MiniSuite;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Evaluation protocol, data side: subsampling, FGVC splits, split unions, suite files, the mini-suite.</summary>
public class SuiteTests
{
    static string RepoFile(string relative)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "VptSharp.slnx"))) return Path.Combine(d.FullName, relative);
        throw new DirectoryNotFoundException("repository root (VptSharp.slnx) not found above " + AppContext.BaseDirectory);
    }

    /// <summary>A label-only dataset (nothing is decoded): class c has counts[c] samples named "c/i".</summary>
    static FileImageDataset Labelled(params int[] counts) => new(
        counts.SelectMany((n, c) => Enumerable.Range(0, n).Select(i => ($"{c}/{i}", c))),
        Enumerable.Range(0, counts.Length).Select(c => c.ToString()).ToArray());

    static int[] PerClass(ImageDataset ds) => Enumerable.Range(0, ds.Classes.Count).Select(c => ds.Labels().Count(l => l == c)).ToArray();
    static string[] Names(ImageDataset ds) => Enumerable.Range(0, ds.Count).Select(ds.NameOf).ToArray();

    [Fact]
    public void SubsampleBalancedKeepsTheRoundedShareOfEveryClass()
    {
        var ds = Labelled(10, 25, 3, 1);
        Assert.Equal([1, 3, 1, 1], PerClass(ds.SubsampleBalanced(0.1, seed: 1)));   // 2.5 rounds up; at least one per class
        Assert.Equal([8, 20, 2, 1], PerClass(ds.SubsampleBalanced(0.8, seed: 1)));
        Assert.Equal([10, 25, 3, 1], PerClass(ds.SubsampleBalanced(1.0, seed: 1)));
        Assert.Equal(Names(ds.SubsampleBalanced(0.5, 7)), Names(ds.SubsampleBalanced(0.5, 7)));
        Assert.NotEqual(Names(ds.SubsampleBalanced(0.5, 7)), Names(ds.SubsampleBalanced(0.5, 8)));
        var half = Names(ds.SubsampleBalanced(0.5, 7));
        Assert.Equal(half.Length, half.Distinct().Count());
        Assert.All(half, n => Assert.Contains(n, Names(ds)));
        Assert.Throws<ArgumentException>(() => ds.SubsampleBalanced(0, 1));
        Assert.Throws<ArgumentException>(() => ds.SubsampleBalanced(1.5, 1));
    }

    [Fact]
    public void UnionSpecPoolsSplitsOverOneClassSet()
    {
        string root = MakeImageFolder(TempDir(), 2, 3);
        File.WriteAllText(Path.Combine(root, "train.json"), """{"class0/000.png": "bird", "class1/000.png": "cat", "class0/001.png": "bird"}""");
        File.WriteAllText(Path.Combine(root, "val.json"), """{"class1/001.png": "ant", "class0/002.png": "cat"}""");
        var both = DatasetSpec.Open(Path.Combine(root, "train.json") + "|" + Path.Combine(root, "val.json"));
        Assert.Equal(["ant", "bird", "cat"], both.Classes);             // one class set, matched by name
        Assert.Equal([1, 2, 1, 0, 2], both.Labels());
        Assert.Equal(Path.Combine(root, "class0/002.png"), both.NameOf(4));

        // numbered labels: a split that lacks the top class keeps the numbering
        File.WriteAllLines(Path.Combine(root, "a.txt"), ["class0/000.png 0", "class1/000.png 2"]);
        File.WriteAllLines(Path.Combine(root, "b.txt"), ["class0/001.png 1"]);
        var ab = DatasetSpec.Open(Path.Combine(root, "a.txt") + "|" + Path.Combine(root, "b.txt"));
        Assert.Equal(["0", "1", "2"], ab.Classes);
        Assert.Equal([0, 2, 1], ab.Labels());
        // '+' binds looser: (a|b) + b puts b's two numbered classes after a|b's three
        var mixed = DatasetSpec.Open($"{Path.Combine(root, "a.txt")}|{Path.Combine(root, "b.txt")}+{Path.Combine(root, "b.txt")}");
        Assert.Equal(5, mixed.Classes.Count);
        Assert.Equal([0, 2, 1, 3 + 1], mixed.Labels());

        var suite = new Suite { Name = "x", Root = root, Tasks = [] };
        Assert.Equal($"{root}/a.json|{root}/b.json+fashion-mnist:test", suite.Resolve("a.json|b.json+fashion-mnist:test"));
    }

    [Fact]
    public void FgvcSplitIsStratifiedSeededAndReadableAsJsonMaps()
    {
        string dir = TempDir(), src = Path.Combine(dir, "dataset");
        Directory.CreateDirectory(src);
        var map = new Dictionary<string, int>();
        foreach (var (c, n) in new[] { (0, 20), (1, 10), (2, 1), (3, 15) })
            for (int i = 0; i < n; i++) map[$"images/c{c}_{i:D2}.jpg"] = c;
        string trainJson = Path.Combine(src, "train_full.json");
        File.WriteAllText(trainJson, JsonSerializer.Serialize(map));

        string outA = Path.Combine(dir, "splitA"), outB = Path.Combine(dir, "splitB"), outC = Path.Combine(dir, "splitC");
        var res = FgvcSplit.Write(trainJson, 0.1, 42, outA);
        Assert.Equal((41, 5, 4), (res.TrainCount, res.ValCount, res.Classes));
        var train = FileImageDataset.FromJsonMap(res.TrainPath);
        var val = FileImageDataset.FromJsonMap(res.ValPath, null, train.Classes);
        Assert.Equal([18, 9, 1, 13], PerClass(train));                // 1.5 rounds up; a single image stays in train
        Assert.Equal([2, 1, 0, 2], PerClass(val));
        // paths were rebased to the output folder: together they are exactly the input images, once each
        var all = Names(train).Concat(Names(val)).Select(Path.GetFullPath).Order().ToArray();
        Assert.Equal(map.Keys.Select(k => Path.GetFullPath(Path.Combine(src, k))).Order(), all);
        Assert.StartsWith("../dataset/images/", File.ReadAllText(res.ValPath).Split('"')[1]);

        FgvcSplit.Write(trainJson, 0.1, 42, outB);
        Assert.Equal(File.ReadAllBytes(res.ValPath), File.ReadAllBytes(Path.Combine(outB, "val.json")));
        Assert.Equal(File.ReadAllBytes(res.TrainPath), File.ReadAllBytes(Path.Combine(outB, "train.json")));
        FgvcSplit.Write(trainJson, 0.1, 43, outC);
        Assert.NotEqual(File.ReadAllText(res.ValPath), File.ReadAllText(Path.Combine(outC, "val.json")));

        // the same folder keeps paths as they were; overwriting the input is refused
        File.Copy(trainJson, Path.Combine(src, "train.json"));
        var e = Assert.Throws<InvalidSettingException>(() => FgvcSplit.Write(Path.Combine(src, "train.json"), 0.1, 42, src));
        Assert.Contains("overwrite the input", e.Message);
        var inPlace = FgvcSplit.Write(trainJson, 0.1, 42, src);
        Assert.Contains("\"images/", File.ReadAllText(inPlace.ValPath));
        File.WriteAllText(Path.Combine(dir, "bad.json"), """{"a.jpg": 1.5}""");
        var bad = Assert.Throws<FormatException>(() => FgvcSplit.Write(Path.Combine(dir, "bad.json"), 0.1, 42, outC));
        Assert.Contains("bad.json", bad.Message);
    }

    [Fact]
    public void DataSplitCommandWritesTrainAndValJson()
    {
        string dir = TempDir();
        var map = Enumerable.Range(0, 30).ToDictionary(i => $"img{i:D2}.jpg", i => i % 3);
        File.WriteAllText(Path.Combine(dir, "train_full.json"), JsonSerializer.Serialize(map));
        var r = RunCli("data", "split", "--data", Path.Combine(dir, "train_full.json"), "--val-fraction", "0.2", "--seed", "1", "--out", Path.Combine(dir, "out"));
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Equal(6, FileImageDataset.FromJsonMap(Path.Combine(dir, "out", "val.json")).Count);
        Assert.Equal(24, FileImageDataset.FromJsonMap(Path.Combine(dir, "out", "train.json")).Count);
        var missing = RunCli("data", "split", "--data", Path.Combine(dir, "nope.json"), "--out", dir);
        Assert.Equal(1, missing.ExitCode);
        Assert.StartsWith("error: ", missing.Stderr);
        Assert.Contains("nope.json", missing.Stderr);
        Assert.Single(missing.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public void ShippedSuitesLoadWithTheirGroups()
    {
        var vtab = Suite.Load(RepoFile("suites/vtab-1k.json"));
        Assert.Equal(19, vtab.Tasks.Count);
        Assert.Equal(["cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"],
            vtab.Tasks.Where(t => t.Group == "Natural").Select(t => t.Name));
        Assert.Equal(["patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"], vtab.Tasks.Where(t => t.Group == "Specialized").Select(t => t.Name));
        Assert.Equal(["clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori", "smallnorb_azi", "smallnorb_ele"],
            vtab.Tasks.Where(t => t.Group == "Structured").Select(t => t.Name));
        Assert.Equal((100, 397, 2, 16), (vtab.Task("cifar").Classes, vtab.Task("sun397").Classes, vtab.Task("patch_camelyon").Classes, vtab.Task("dsprites_loc").Classes));
        Assert.Equal(Path.GetFullPath(RepoFile("data/vtab-1k/dtd/train800val200.txt")), vtab.Resolve(vtab.Task("dtd").TrainVal));
        Assert.All(vtab.Tasks, t => Assert.Equal("plain", t.Augment));

        var fgvc = Suite.Load(RepoFile("suites/fgvc.json"), root: "/data/fgvc");
        Assert.Equal(["CUB_200_2011", "nabirds", "OxfordFlower", "StanfordDogs", "StanfordCars"], fgvc.Tasks.Select(t => t.Name));
        Assert.All(fgvc.Tasks, t => Assert.Equal(("FGVC", "crop-flip"), (t.Group, t.Augment)));
        Assert.Equal([200, 555, 102, 120, 196], fgvc.Tasks.Select(t => t.Classes));
        Assert.Equal("/data/fgvc/nabirds/train.json", fgvc.Resolve(fgvc.Task("nabirds").TrainVal)); // final FGVC runs train on train (reference train.py)

        // the shipped mini.json is what the generators describe
        var mini = Suite.Load(RepoFile("suites/mini.json"));
        Assert.Equal(Path.GetFullPath(RepoFile("data/mini")), mini.Root);
        var described = MiniSuiteWriter.Descriptor();
        Assert.Equal(described.Tasks, mini.Tasks);
        Assert.Equal(["Natural", "Natural", "Specialized", "Structured", "Structured", "Structured", "Structured"], mini.Tasks.Select(t => t.Group));
    }

    [Fact]
    public void MiniSuiteHasVtabShapedBalancedSplits()
    {
        string dir = TempDir();
        foreach (var name in MiniTasks.Names) MiniSuiteWriter.Write(MiniTasks.Create(name, seed: 0), dir);
        var suite = Suite.Load(RepoFile("suites/mini.json"), root: dir);
        var expectedClasses = new Dictionary<string, int>
            { ["fmnist-5to9"] = 5, ["glyphs"] = 10, ["textures"] = 8, ["dsprites-loc"] = 8, ["dsprites-ori"] = 8, ["count"] = 6, ["distance"] = 6 };
        Assert.Equal(expectedClasses.Keys, suite.Tasks.Select(t => t.Name));
        foreach (var task in suite.Tasks)
        {
            var train = DatasetSpec.Open(suite.Resolve(task.Train));
            var val = DatasetSpec.Open(suite.Resolve(task.Val), train.Classes);
            var trainVal = DatasetSpec.Open(suite.Resolve(task.TrainVal), train.Classes);
            var test = DatasetSpec.Open(suite.Resolve(task.Test), train.Classes);
            Assert.Equal((800, 200, 1000, 1000), (train.Count, val.Count, trainVal.Count, test.Count));
            Assert.Equal(expectedClasses[task.Name], train.Classes.Count);
            Assert.Equal(Names(train).Concat(Names(val)), Names(trainVal));
            Assert.Equal(train.Labels().Concat(val.Labels()), trainVal.Labels());
            Assert.Empty(Names(train).Intersect(Names(test)));
            foreach (var split in new[] { train, val, test })
            {
                var counts = PerClass(split);
                Assert.True(counts.Max() - counts.Min() <= 1, $"{task.Name}: class counts {string.Join(",", counts)}");
            }
            var img = train.Load(799);
            Assert.Equal((32, 32), (img.Width, img.Height));
        }
        Assert.True(File.Exists(Path.Combine(dir, "glyphs", "images", "test_0999.png")));
        Assert.Empty(Directory.GetDirectories(dir, "*.tmp-*"));
    }

    [Fact]
    public void MiniSuiteIsByteIdenticalForASeed()
    {
        var sizes = new MiniSplitSizes(Train: 12, Val: 6, Test: 10);
        string a = TempDir(), b = TempDir(), c = TempDir();
        foreach (var name in MiniTasks.Names)
        {
            MiniSuiteWriter.Write(MiniTasks.Create(name, seed: 0), a, sizes);
            MiniSuiteWriter.Write(MiniTasks.Create(name, seed: 0), b, sizes, threads: 1);
            MiniSuiteWriter.Write(MiniTasks.Create(name, seed: 1), c, sizes);
        }
        var files = Directory.GetFiles(a, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(a, f)).Order().ToArray();
        Assert.Equal(7 * (28 + 4), files.Length);
        Assert.Contains(Path.Combine("count", "train12val6.txt"), files);
        Assert.Equal(files, Directory.GetFiles(b, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(b, f)).Order());
        foreach (var f in files) Assert.True(File.ReadAllBytes(Path.Combine(a, f)).SequenceEqual(File.ReadAllBytes(Path.Combine(b, f))), f);
        foreach (var name in MiniTasks.Names)
        {
            // another seed: other images (fmnist: other source images; the rest: other renderings)
            var differ = Enumerable.Range(0, 12).Count(i =>
                !File.ReadAllBytes(Path.Combine(a, name, "images", $"train_{i:D4}.png")).SequenceEqual(File.ReadAllBytes(Path.Combine(c, name, "images", $"train_{i:D4}.png"))));
            Assert.True(differ >= 10, $"{name}: only {differ} of 12 images changed with the seed");
        }
        // rewriting a task replaces it whole
        MiniSuiteWriter.Write(MiniTasks.Create("count", seed: 1), a, sizes);
        Assert.Equal(File.ReadAllBytes(Path.Combine(c, "count", "images", "val_0003.png")), File.ReadAllBytes(Path.Combine(a, "count", "images", "val_0003.png")));
    }

    /// <summary>Pixels that differ from the background by more than <paramref name="threshold"/> in some channel.</summary>
    static bool[] Foreground(RgbImage img, int bg, int threshold) =>
        Enumerable.Range(0, img.Width * img.Height).Select(i =>
            Math.Max(Math.Abs(img.Pixels[3 * i] - bg), Math.Max(Math.Abs(img.Pixels[3 * i + 1] - bg), Math.Abs(img.Pixels[3 * i + 2] - bg))) > threshold).ToArray();

    /// <summary>8-connected components of the foreground: per component, its pixel indices.</summary>
    static List<List<int>> Components(bool[] fg, int w)
    {
        var seen = new bool[fg.Length];
        var comps = new List<List<int>>();
        for (int s = 0; s < fg.Length; s++)
        {
            if (!fg[s] || seen[s]) continue;
            var comp = new List<int>();
            var stack = new Stack<int>([s]);
            seen[s] = true;
            while (stack.Count > 0)
            {
                int p = stack.Pop(); comp.Add(p);
                int x = p % w, y = p / w;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                    {
                        int nx = x + dx, ny = y + dy, q = ny * w + nx;
                        if (nx >= 0 && nx < w && ny >= 0 && ny < fg.Length / w && fg[q] && !seen[q]) { seen[q] = true; stack.Push(q); }
                    }
            }
            comps.Add(comp);
        }
        return comps;
    }

    [Fact]
    public void StructuredLabelsMatchWhatIsDrawn()
    {
        var count = MiniTasks.Create("count", seed: 3);
        for (int i = 0; i < 120; i++)
        {
            var s = count.Generate(MiniSplit.Test, i);
            Assert.Equal(i % 6, s.Label);
            Assert.Equal(s.Label + 1, s.Factors["count"]);
            Assert.Equal(s.Label + 1, Components(Foreground(s.Image, (int)s.Factors["background"], 40), 32).Count);
        }

        var loc = MiniTasks.Create("dsprites-loc", seed: 3);
        for (int i = 0; i < 120; i++)
        {
            var s = loc.Generate(MiniSplit.Train, i);
            Assert.Equal(DspritesLocationTask.BinOf(s.Factors["x"]), s.Label);
            // intensity-weighted centroid of the white shape on black: the recorded centre
            double sum = 0, sx = 0;
            for (int p = 0; p < 32 * 32; p++) { double v = s.Image.Pixels[3 * p]; sum += v; sx += v * (p % 32 + 0.5); }
            Assert.True(Math.Abs(sx / sum - s.Factors["x"]) < 0.3, $"sample {i}: centroid x {sx / sum:F2}, recorded {s.Factors["x"]:F2}");
        }

        var dist = MiniTasks.Create("distance", seed: 3);
        for (int i = 0; i < 120; i++)
        {
            var s = dist.Generate(MiniSplit.Val, i);
            Assert.Equal(DistanceTask.BinOf(s.Factors["distance"]), s.Label);
            var comps = Components(Foreground(s.Image, (int)s.Factors["background"], 40), 32);
            Assert.Equal(2, comps.Count);
            var c = comps.Select(cc => (X: cc.Average(p => p % 32 + 0.5), Y: cc.Average(p => p / 32 + 0.5))).ToArray();
            double d = Math.Sqrt(Math.Pow(c[0].X - c[1].X, 2) + Math.Pow(c[0].Y - c[1].Y, 2));
            Assert.True(Math.Abs(d - s.Factors["distance"]) < 1.0, $"sample {i}: drawn distance {d:F2}, recorded {s.Factors["distance"]:F2}");
        }

        var ori = MiniTasks.Create("dsprites-ori", seed: 3);
        int arrows = 0;
        for (int i = 0; i < 120; i++)
        {
            var s = ori.Generate(MiniSplit.Train, i);
            Assert.Equal((int)(s.Factors["angle"] / 45), s.Label);
            if (s.Factors["shape"] != 0) continue; // arrows: the farthest lit pixel from the centroid is the tip
            arrows++;
            var lit = Enumerable.Range(0, 32 * 32).Where(p => s.Image.Pixels[3 * p] > 128).ToArray();
            double cx = lit.Average(p => p % 32 + 0.5), cy = lit.Average(p => p / 32 + 0.5);
            int tip = lit.MaxBy(p => Math.Pow(p % 32 + 0.5 - cx, 2) + Math.Pow(p / 32 + 0.5 - cy, 2));
            // clockwise from up, in image coordinates (y down)
            double drawn = (Math.Atan2(tip % 32 + 0.5 - cx, -(tip / 32 + 0.5 - cy)) * 180 / Math.PI + 360) % 360;
            double off = Math.Abs((drawn - s.Factors["angle"] + 540) % 360 - 180);
            Assert.True(off < 20, $"sample {i}: tip at {drawn:F0}°, recorded {s.Factors["angle"]:F0}°");
        }
        Assert.True(arrows > 30);
    }

    [Fact]
    public void FashionMnistTaskUsesOnlyUnseenClassesWithDisjointSplits()
    {
        var task = MiniTasks.Create("fmnist-5to9", seed: 0);
        Assert.Equal(["sandal", "shirt", "sneaker", "bag", "ankle-boot"], task.Classes);
        var source = new FashionMnist("train");
        var train = Enumerable.Range(0, 50).Select(i => task.Generate(MiniSplit.Train, i)).ToArray();
        var val = Enumerable.Range(0, 50).Select(i => task.Generate(MiniSplit.Val, i)).ToArray();
        Assert.All(train.Concat(val), s => Assert.Equal(5 + s.Label, source.LabelOf((int)s.Factors["source_index"])));
        Assert.Empty(train.Select(s => s.Factors["source_index"]).Intersect(val.Select(s => s.Factors["source_index"])));
        var test = task.Generate(MiniSplit.Test, 7);
        Assert.Equal(5 + test.Label, new FashionMnist("test").LabelOf((int)test.Factors["source_index"]));
    }

    [Fact]
    public void GlyphsUseSortedFontsAndExplainMissingOnes()
    {
        var fonts = GlyphsTask.LoadFonts(GlyphsTask.DefaultFontDir);
        Assert.NotEmpty(fonts);
        Assert.Equal(fonts.Select(f => f.FamilyName), GlyphsTask.LoadFonts(GlyphsTask.DefaultFontDir).Select(f => f.FamilyName));
        var glyphs = MiniTasks.Create("glyphs", seed: 0, fontDir: TempDir());
        var e = Assert.Throws<InputFileException>(() => glyphs.Generate(MiniSplit.Train, 0));
        Assert.Contains("fonts-dejavu-core fonts-liberation fonts-freefont-ttf", e.Message);
        var r = RunCli("data", "make", "glyphs", "--out", TempDir(), "--font-dir", TempDir());
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("apt-get install fonts-dejavu-core", r.Stderr);
        var unknown = RunCli("data", "make", "cifar", "--out", TempDir());
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("unknown mini-suite task 'cifar'", unknown.Stderr);
    }
}
