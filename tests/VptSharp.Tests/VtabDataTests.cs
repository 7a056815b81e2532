using System.Text.Json;
using PureHDF;
using VptSharp.Data;
using VptSharp.Data.Fgvc;
using VptSharp.Data.Vtab;
using VptSharp.Data.Vtab.Archives;
using static VptSharp.Tests.VtabFixtures;

namespace VptSharp.Tests;

/// <summary>`vpt data vtab` / `vpt data fgvc`: every source format is written here by the test itself, and the built
/// tasks are checked to the example — VTAB's split sizes and sources, label functions, image bytes.</summary>
public class VtabDataTests
{
    static string[] Lines(string dir, string file) => File.ReadAllLines(Path.Combine(dir, file));
    static int LabelOf(string line) => int.Parse(line.Split(' ')[1]);

    [Fact]
    public void Crc32cMatchesTheKnownCheckValue()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8)); // the CRC-32C check value
    }

    [Fact]
    public void TfdsSplitStringsFollowTfdsSlicing()
    {
        var sizes = new Dictionary<string, int> { ["train"] = 50000, ["test"] = 24300, ["validation"] = 10 };
        var s = SplitSlice.Parse("train[:800]+train[45000:45200]", sizes);
        Assert.Equal([new SplitSlice("train", 0, 800), new SplitSlice("train", 45000, 45200)], s);
        Assert.Equal(new SplitSlice("test", 12150, 24300), SplitSlice.Parse("test[50%:]", sizes).Single());
        Assert.Equal(new SplitSlice("test", 24290, 24300), SplitSlice.Parse("test[-10:]", sizes).Single());
        Assert.Equal(new SplitSlice("validation", 0, 10), SplitSlice.Parse("validation", sizes).Single());
        Assert.Equal(new SplitSlice("validation", 0, 10), SplitSlice.Parse("validation[:200]", sizes).Single()); // clamped, as Python slicing
        var e = Assert.Throws<InvalidDataException>(() => SplitSlice.Parse("valid[:200]", sizes));
        Assert.Contains("no 'valid' split", e.Message);
    }

    [Fact]
    public void EveryVtabTaskCutsVtabsSplitsFromItsSource()
    {
        // Sizes of the real TFDS datasets: the VTAB split strings they give (task_adaptation/data/*.py).
        var cifar = VtabTasks.Get("cifar").Splits(new Dictionary<string, int> { ["train"] = 50000, ["test"] = 10000 });
        Assert.Equal(("train[:800]", "train[45000:45200]", "test"), cifar);
        var pets = VtabTasks.Get("oxford_iiit_pet").Splits(new Dictionary<string, int> { ["train"] = 3680, ["test"] = 3669 });
        Assert.Equal(("train[:800]", "train[2944:3144]", "test"), pets);
        var eurosat = VtabTasks.Get("eurosat").Splits(new Dictionary<string, int> { ["train"] = 27000 });
        Assert.Equal(("train[:800]", "train[16200:16400]", "train[21600:]"), eurosat);
        var dsprites = VtabTasks.Get("dsprites_ori").Splits(new Dictionary<string, int> { ["train"] = 737280 });
        Assert.Equal(("train[:800]", "train[589824:590024]", "train[663552:]"), dsprites);
        var clevr = VtabTasks.Get("clevr_count").Splits(new Dictionary<string, int> { ["train"] = 70000, ["validation"] = 15000 });
        Assert.Equal(("train[:800]", "train[63000:63200]", "validation"), clevr);
        Assert.Equal(("train[:800]", "test[:200]", "test[50%:]"), VtabTasks.Get("smallnorb_ele").Splits(new Dictionary<string, int>()));
        Assert.Equal(19, VtabTasks.All.Count);
        Assert.Equal([100, 102, 47, 102, 37, 10, 397, 2, 10, 45, 5, 8, 6, 6, 4, 16, 16, 18, 9], VtabTasks.All.Select(t => t.Classes));
    }

    [Fact]
    public void LabelFunctionsBinAsTaskAdaptation()
    {
        TfExample Clevr(params float[] depths)
        {
            var e = new TfExample();
            e.Floats["objects/pixel_coords"] = depths.SelectMany(d => new[] { 10f, 20f, d }).ToList();
            e.Ints["objects/size"] = depths.Select(_ => 0L).ToList();
            return e;
        }
        Assert.Equal(0, VtabTasks.ClevrClosestDistance(Clevr(7.9f, 12f)));   // (0, 8]
        Assert.Equal(1, VtabTasks.ClevrClosestDistance(Clevr(8.2f)));         // (8, 8.5]
        Assert.Equal(4, VtabTasks.ClevrClosestDistance(Clevr(11f, 9.7f)));    // (9.5, 10]
        Assert.Equal(5, VtabTasks.ClevrClosestDistance(Clevr(10.5f)));        // (10, 100]
        Assert.Equal(2, VtabTasks.ClevrCount(Clevr(9, 9, 9, 9, 9)));         // 5 objects − 3
        TfExample Kitti(long[] types, float[] z)
        {
            var e = new TfExample();
            e.Ints["objects/type"] = [.. types];
            e.Floats["objects/location"] = z.SelectMany(v => new[] { 1f, 1.5f, v }).ToList();
            return e;
        }
        Assert.Equal(0, VtabTasks.KittiClosestVehicle(Kitti([0, 3], [7.5f, 2f])));  // pedestrian at 2 m ignored; car at 7.5
        Assert.Equal(1, VtabTasks.KittiClosestVehicle(Kitti([1, 2], [30f, 12f])));  // van 30, truck 12 → (8, 20]
        Assert.Equal(2, VtabTasks.KittiClosestVehicle(Kitti([0], [45f])));
        Assert.Equal(3, VtabTasks.KittiClosestVehicle(Kitti([3, 5], [4f, 6f])));   // no vehicle → 1000
        Assert.Equal(3, VtabTasks.KittiClosestVehicle(Kitti([], [])));
        var ori = new TfExample(); ori.Ints["label_orientation"] = [39]; ori.Ints["label_x_position"] = [31];
        Assert.Equal(15, VtabTasks.Get("dsprites_ori").Label(ori)); // floor(39 / 2.5)
        Assert.Equal(15, VtabTasks.Get("dsprites_loc").Label(ori)); // floor(31 / 2)
        ori.Ints["label_orientation"] = [5];
        Assert.Equal(2, VtabTasks.Get("dsprites_ori").Label(ori));
    }

    static List<Ex> DspritesExamples(int n) => Enumerable.Range(0, n).Select(i =>
    {
        var e = new Ex();
        e.Bytes["image"] = GrayPng(8, (byte)(i % 2));
        e.Ints["label_x_position"] = [(i * 7) % 32];
        e.Ints["label_orientation"] = [(i * 3) % 40];
        e.Ints["label_shape"] = [i % 3];
        return e;
    }).ToList();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TfdsShardsBuildDspritesWithVtabSplitsAndLabels(bool withInfo)
    {
        string dir = TestUtil.TempDir(), data = Path.Combine(dir, "tfds"), outDir = Path.Combine(dir, "vtab");
        const int N = 2000; // 80% = 1600: train800 = [0, 800), val200 = [1600, 1800), test = [1800, 2000)
        TfdsDataset(data, "dsprites", "2.0.0", new() { ["train"] = DspritesExamples(N) }, shards: 3, withInfo);
        var task = VtabTasks.Get("dsprites_loc");
        var src = new TfdsSource(data, task.Tfds);
        Assert.Equal(N, src.SplitSizes["train"]);
        var res = VtabBuilder.Build(task, src, outDir);
        Assert.Equal((800, 200, 200), (res.Train800, res.Val200, res.Test));
        string t = res.TaskDir;
        var train = Lines(t, "train800.txt"); var val = Lines(t, "val200.txt"); var test = Lines(t, "test.txt");
        Assert.Equal(Enumerable.Range(0, 800).Select(i => (i * 7) % 32 / 2), train.Select(LabelOf));
        Assert.Equal(Enumerable.Range(1600, 200).Select(i => (i * 7) % 32 / 2), val.Select(LabelOf));
        Assert.Equal(Enumerable.Range(1800, 200).Select(i => (i * 7) % 32 / 2), test.Select(LabelOf));
        Assert.Equal(train.Concat(val), Lines(t, "train800val200.txt"));
        // dSprites pixels are 0/1 and VTAB multiplies them by 255.
        var odd = FileImageDataset.Decode(Path.Combine(t, train[1].Split(' ')[0]));
        var even = FileImageDataset.Decode(Path.Combine(t, train[0].Split(' ')[0]));
        Assert.All(odd.Pixels, p => Assert.Equal(255, p));
        Assert.All(even.Pixels, p => Assert.Equal(0, p));
        // The suite reads it back as 16 classes.
        var ds = DatasetSpec.Open(Path.Combine(t, "train800val200.txt"));
        Assert.Equal(1000, ds.Count);
        // An existing task is never overwritten.
        var again = Assert.Throws<InputFileException>(() => VtabBuilder.Build(task, new TfdsSource(data, task.Tfds), outDir));
        Assert.Contains("already exists", again.Message); Assert.Equal("out-dir", again.Setting);
    }

    [Fact]
    public void TfdsSmallnorbUsesPercentTestSplitAndClevrUsesValidationAsTest()
    {
        string dir = TestUtil.TempDir(), data = Path.Combine(dir, "tfds");
        List<Ex> Norb(int n, int offset) => Enumerable.Range(0, n).Select(i =>
        {
            var e = new Ex(); e.Bytes["image"] = GrayPng(4, 90);
            e.Ints["label_azimuth"] = [(offset + i) % 18]; e.Ints["label_elevation"] = [(offset + i) % 9];
            return e;
        }).ToList();
        TfdsDataset(data, "smallnorb", "2.0.0", new() { ["train"] = Norb(900, 0), ["test"] = Norb(500, 1000) }, shards: 2, withInfo: true);
        var res = VtabBuilder.Build(VtabTasks.Get("smallnorb_ele"), new TfdsSource(data, "smallnorb"), Path.Combine(dir, "out"));
        Assert.Equal((800, 200, 250), (res.Train800, res.Val200, res.Test)); // val = test[:200], test = test[50%:]
        Assert.Equal(Enumerable.Range(1000 + 250, 250).Select(i => i % 9), Lines(res.TaskDir, "test.txt").Select(LabelOf));
        Assert.Equal(Enumerable.Range(1000, 200).Select(i => i % 9), Lines(res.TaskDir, "val200.txt").Select(LabelOf));

        List<Ex> Scenes(int n, int seed) => Enumerable.Range(0, n).Select(i =>
        {
            var e = new Ex(); e.Bytes["image"] = RgbPng(4, 1, 2, 3);
            int objects = 3 + (seed + i) % 8;
            e.Ints["objects/size"] = Enumerable.Repeat(1L, objects).ToArray();
            e.Floats["objects/pixel_coords"] = Enumerable.Range(0, objects).SelectMany(k => new[] { 1f, 2f, 7.5f + 0.5f * ((seed + i + k) % 6) }).ToArray();
            return e;
        }).ToList();
        TfdsDataset(data, "clevr", "3.1.0", new() { ["train"] = Scenes(2000, 0), ["validation"] = Scenes(50, 7), ["test"] = Scenes(3, 0) }, shards: 2, withInfo: false);
        var count = VtabBuilder.Build(VtabTasks.Get("clevr_count"), new TfdsSource(data, "clevr"), Path.Combine(dir, "out"));
        Assert.Equal((800, 200, 50), (count.Train800, count.Val200, count.Test)); // val200 = train[1800:2000], test = validation
        Assert.Equal(Enumerable.Range(1800, 200).Select(i => i % 8), Lines(count.TaskDir, "val200.txt").Select(LabelOf));
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (7 + i) % 8), Lines(count.TaskDir, "test.txt").Select(LabelOf));
        var dist = VtabBuilder.Build(VtabTasks.Get("clevr_dist"), new TfdsSource(data, "clevr"), Path.Combine(dir, "out"));
        // nearest depth 7.5 → class 0 (≤ 8); 8.0 → 0 (8 is not < 8); 8.5 → 1; 9.0 → 2; 9.5 → 3; 10.0 → 4
        int Dist(int seed, int i)
        {
            int objects = 3 + (seed + i) % 8;
            double d = Enumerable.Range(0, objects).Min(k => 7.5 + 0.5 * ((seed + i + k) % 6));
            return d switch { <= 8 => 0, <= 8.5 => 1, <= 9 => 2, <= 9.5 => 3, <= 10 => 4, _ => 5 };
        }
        Assert.Equal(Enumerable.Range(0, 800).Select(i => Dist(0, i)), Lines(dist.TaskDir, "train800.txt").Select(LabelOf));
        Assert.Contains(Lines(dist.TaskDir, "train800.txt").Select(LabelOf), l => l == 1);
    }
}
