using System.Text;
using System.Text.Json;
using PureHDF;
using VptSharp.Data;
using VptSharp.Data.Fgvc;
using VptSharp.Data.Vtab;
using VptSharp.Data.Vtab.Archives;
using static VptSharp.Tests.VtabFixtures;

namespace VptSharp.Tests;

/// <summary>The original-archive readers of `vpt data vtab` and the release readers of `vpt data fgvc`, each on a
/// fixture written here in the archive's own format.</summary>
public class VtabArchiveTests
{
    static string[] Lines(string dir, string file) => File.ReadAllLines(Path.Combine(dir, file));
    static int LabelOf(string line) => int.Parse(line.Split(' ')[1]);

    [Fact]
    public void CifarPythonBatchesBuildTheCifarTaskWithoutExecutingPickleCode()
    {
        string dir = TestUtil.TempDir(), src = Path.Combine(dir, "cifar-100-python");
        Directory.CreateDirectory(src);
        // Pixel (plane c, position p) of row r encodes r and c so the CHW → HWC reordering is checked.
        byte[] Rows(int n) => Enumerable.Range(0, n).SelectMany(r => Enumerable.Range(0, 3072).Select(j => (byte)((r + 50 * (j / 1024)) % 256))).ToArray();
        int[] Labels(int n, int k) => Enumerable.Range(0, n).Select(i => (i * k) % 100).ToArray();
        File.WriteAllBytes(Path.Combine(src, "train"), CifarPickle(Rows(2000), 2000, Labels(2000, 3)));
        File.WriteAllBytes(Path.Combine(src, "test"), CifarPickle(Rows(30), 30, Labels(30, 7)));
        var res = VtabBuilder.Build(VtabTasks.Get("cifar"), ArchiveSources.Open(VtabTasks.Get("cifar"), dir), Path.Combine(dir, "out"));
        Assert.Equal((800, 200, 30), (res.Train800, res.Val200, res.Test)); // val200 = train[1800:2000]
        Assert.Equal(Enumerable.Range(1800, 200).Select(i => (i * 3) % 100), Lines(res.TaskDir, "val200.txt").Select(LabelOf));
        Assert.Equal(Enumerable.Range(0, 30).Select(i => (i * 7) % 100), Lines(res.TaskDir, "test.txt").Select(LabelOf));
        var img = FileImageDataset.Decode(Path.Combine(res.TaskDir, Lines(res.TaskDir, "val200.txt")[5].Split(' ')[0]));
        Assert.Equal((32, 32), (img.Width, img.Height));
        Assert.Equal(new byte[] { (1805 % 256), (1855 % 256), (1905 % 256) }, img.Pixels[..3]); // R, G, B of row 1805

        // A pickle that names any other callable is refused, and nothing in it runs.
        byte[] evil = [0x80, 2, .. "cos\nsystem\n"u8, (byte)'X', 2, 0, 0, 0, .. "ls"u8, 0x85, (byte)'R', (byte)'.']; // os.system("ls")
        File.WriteAllBytes(Path.Combine(src, "train"), evil);
        var e = Assert.Throws<InvalidDataException>(() => ArchiveSources.Cifar100(dir));
        Assert.True(e.Message.Contains("os.system"), e.Message);
        Assert.Contains("nothing in a pickle is executed", e.Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void SvhnMatFilesMapDigitTenToZero(bool compressed)
    {
        string dir = TestUtil.TempDir();
        byte[] X(int n) // column-major [32, 32, 3, n]: value = (row + 2·col + 40·ch + n) % 256
        {
            var x = new byte[32 * 32 * 3 * n];
            for (int k = 0; k < n; k++) for (int ch = 0; ch < 3; ch++) for (int c = 0; c < 32; c++) for (int r = 0; r < 32; r++)
                x[r + 32 * c + 1024 * ch + 3072 * k] = (byte)((r + 2 * c + 40 * ch + k) % 256);
            return x;
        }
        MatVar Y(int n) => Doubles("y", [n, 1], Enumerable.Range(0, n).Select(i => (double)(i % 10 + 1)).ToArray()); // 1..10
        File.WriteAllBytes(Path.Combine(dir, "train_32x32.mat"), Mat(compressed, new MatVar("X", 9, [32, 32, 3, 12], 2, X(12)), Y(12)));
        File.WriteAllBytes(Path.Combine(dir, "test_32x32.mat"), Mat(compressed, new MatVar("X", 9, [32, 32, 3, 4], 2, X(4)), Y(4)));
        var src = ArchiveSources.Svhn(dir);
        Assert.Equal(12, src.SplitSizes["train"]);
        Assert.Equal(4, src.SplitSizes["test"]);
        var ex = src.Read("train", 9, 12).ToList();
        Assert.Equal(new long[] { 0, 1, 2 }, ex.Select(e => e.IntOf("label"))); // y = 10 (digit 0) → 0, then 1, 2
        var img = FileImageDataset.Decode(ex[0].BytesOf("image"), "svhn");
        int r = 3, c = 5; // pixel (row 3, col 5) of example 9
        Assert.Equal(new byte[] { (byte)(r + 2 * c + 9), (byte)(r + 2 * c + 40 + 9), (byte)(r + 2 * c + 80 + 9) }, img.Pixels.AsSpan(3 * (r * 32 + c), 3).ToArray());
    }

    [Fact]
    public void DspritesNpzStreamsImagesAndLatents()
    {
        string dir = TestUtil.TempDir();
        const int N = 40;
        var imgs = new byte[N * 4096];
        for (int i = 0; i < N; i++) imgs[i * 4096 + i] = 1; // one lit pixel at position i
        var latents = Enumerable.Range(0, N).SelectMany(i => new long[] { 0, i % 3, i % 6, i % 40, (i * 5) % 32, i % 32 }).SelectMany(BitConverter.GetBytes).ToArray();
        Npz(Path.Combine(dir, "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"),
            ("imgs.npy", Npy("|u1", [N, 64, 64], imgs)), ("latents_classes.npy", Npy("<i8", [N, 6], latents)));
        var src = ArchiveSources.Dsprites(dir);
        Assert.Equal(N, src.SplitSizes["train"]);
        var ex = src.Read("train", 30, 33).ToList();
        Assert.Equal(new long[] { 30 % 40, 31, 32 % 40 }, ex.Select(e => e.IntOf("label_orientation")));
        Assert.Equal(new[] { (30 * 5) % 32 / 2, (31 * 5) % 32 / 2, (32 * 5) % 32 / 2 }, ex.Select(VtabTasks.Get("dsprites_loc").Label));
        var (bytes, _) = VtabBuilder.ImageFile(ex[1].BytesOf("image"), binary: true);
        var img = FileImageDataset.Decode(bytes, "dsprites");
        Assert.Equal(255, img.Pixels[3 * 31]);
        Assert.Equal(255 * 3, img.Pixels.Sum(p => p)); // exactly one lit pixel, scaled by 255
    }

    [Fact]
    public void SmallNorbMatricesHalveTheAzimuth()
    {
        string dir = TestUtil.TempDir();
        foreach (var (word, n) in new[] { ("training", 6), ("testing", 4) })
        {
            var dat = new byte[n * 2 * 9216];
            for (int i = 0; i < n; i++) { Array.Fill(dat, (byte)(10 * i), i * 2 * 9216, 9216); Array.Fill(dat, (byte)255, i * 2 * 9216 + 9216, 9216); }
            var info = Enumerable.Range(0, n).SelectMany(i => new[] { i % 10, i % 9, 2 * (i % 18), i % 6 }).SelectMany(BitConverter.GetBytes).ToArray();
            File.WriteAllBytes(Path.Combine(dir, $"smallnorb-5x46789x9x18x6x2x96x96-{word}-dat.mat"), NorbMatrix(0x1E3D4C55, [n, 2, 96, 96], dat));
            File.WriteAllBytes(Path.Combine(dir, $"smallnorb-5x46789x9x18x6x2x96x96-{word}-info.mat"), NorbMatrix(0x1E3D4C54, [n, 4], info));
        }
        var src = ArchiveSources.SmallNorb(dir);
        Assert.Equal((6, 4), (src.SplitSizes["train"], src.SplitSizes["test"]));
        var ex = src.Read("train", 2, 6).ToList();
        Assert.Equal(new long[] { 2, 3, 4, 5 }, ex.Select(e => e.IntOf("label_azimuth"))); // stored 4, 6, 8, 10
        Assert.Equal(new long[] { 2, 3, 4, 5 }, ex.Select(e => e.IntOf("label_elevation")));
        Assert.All(FileImageDataset.Decode(ex[1].BytesOf("image"), "norb").Pixels, p => Assert.Equal(30, p)); // first camera
        File.WriteAllBytes(Path.Combine(dir, "smallnorb-5x46789x9x18x6x2x96x96-training-info.mat"), [1, 2, 3]);
        var e = Assert.Throws<InvalidDataException>(() => ArchiveSources.SmallNorb(dir));
        Assert.Contains("training-info.mat", e.Message);
    }

    [Fact]
    public void PatchCamelyonHdf5ReadsImagesAndLabels()
    {
        string dir = TestUtil.TempDir();
        foreach (var (name, n) in new[] { ("train", 5), ("valid", 3), ("test", 2) })
        {
            var x = new byte[n * 96 * 96 * 3];
            for (int i = 0; i < n; i++) for (int p = 0; p < 96 * 96; p++) { x[(i * 9216 + p) * 3] = (byte)(i + 1); x[(i * 9216 + p) * 3 + 2] = 7; }
            var y = Enumerable.Range(0, n).Select(i => (byte)(i % 2)).ToArray();
            new H5File { ["x"] = new H5Dataset(x, fileDims: [(ulong)n, 96, 96, 3]) }.Write(Path.Combine(dir, $"camelyonpatch_level_2_split_{name}_x.h5"));
            new H5File { ["y"] = new H5Dataset(y, fileDims: [(ulong)n, 1, 1, 1]) }.Write(Path.Combine(dir, $"camelyonpatch_level_2_split_{name}_y.h5"));
        }
        var src = Camelyon.Open(dir);
        Assert.Equal((5, 3, 2), (src.SplitSizes["train"], src.SplitSizes["validation"], src.SplitSizes["test"]));
        var ex = src.Read("train", 1, 4).ToList();
        Assert.Equal(new long[] { 1, 0, 1 }, ex.Select(e => e.IntOf("label")));
        var img = FileImageDataset.Decode(ex[2].BytesOf("image"), "pcam");
        Assert.Equal(new byte[] { 4, 0, 7 }, img.Pixels[..3]);
    }

    [Fact]
    public void DtdFoldOneListsAndSortedClassNames()
    {
        string dir = TestUtil.TempDir(), root = Path.Combine(dir, "dtd");
        string[] classes = ["zigzagged", "banded", "cracked"];
        foreach (var c in classes)
        {
            Directory.CreateDirectory(Path.Combine(root, "images", c));
            for (int i = 0; i < 4; i++) File.WriteAllBytes(Path.Combine(root, "images", c, $"{c}_{i}.jpg"), RgbPng(4, 9, 9, 9));
        }
        Directory.CreateDirectory(Path.Combine(root, "labels"));
        File.WriteAllLines(Path.Combine(root, "labels", "train1.txt"), ["zigzagged/zigzagged_0.jpg", "banded/banded_1.jpg", "cracked/cracked_2.jpg"]);
        File.WriteAllLines(Path.Combine(root, "labels", "val1.txt"), ["cracked/cracked_0.jpg"]);
        File.WriteAllLines(Path.Combine(root, "labels", "test1.txt"), ["banded/banded_3.jpg", "zigzagged/zigzagged_3.jpg"]);
        var src = ArchiveSources.Open(VtabTasks.Get("dtd"), dir);
        Assert.Equal((3, 1, 2), (src.SplitSizes["train"], src.SplitSizes["validation"], src.SplitSizes["test"]));
        Assert.Equal(new long[] { 2, 0, 1 }, src.Read("train", 0, 3).Select(e => e.IntOf("label"))); // banded 0, cracked 1, zigzagged 2
        File.WriteAllLines(Path.Combine(root, "labels", "test1.txt"), ["woven/woven_1.jpg"]);
        var e = Assert.Throws<InvalidDataException>(() => ArchiveSources.Open(VtabTasks.Get("dtd"), dir));
        Assert.Contains("class 'woven'", e.Message);
    }

    [Fact]
    public void CorruptTfRecordIsOneLineErrorFromTheCli()
    {
        string dir = TestUtil.TempDir(), data = Path.Combine(dir, "tfds");
        var shardDir = TfdsDataset(data, "dtd", "3.0.1", new()
        {
            ["train"] = Enumerable.Range(0, 3).Select(i => { var e = new Ex(); e.Bytes["image"] = RgbPng(4, 1, 1, 1); e.Ints["label"] = [i]; return e; }).ToList(),
        }, shards: 1, withInfo: false);
        string shard = Directory.GetFiles(shardDir).Single();
        var bytes = File.ReadAllBytes(shard);
        bytes[30] ^= 0xFF; // inside the first record's data
        File.WriteAllBytes(shard, bytes);
        var e = Assert.Throws<InvalidDataException>(() => new TfdsSource(data, "dtd").Read("train", 0, 1).ToList());
        Assert.Contains("CRC mismatch", e.Message);
        var r = TestUtil.RunCli("data", "vtab", "--task", "dtd", "--from", data, "--out", Path.Combine(dir, "out"));
        Assert.Equal(1, r.ExitCode);
        var err = r.Stderr.Trim();
        Assert.DoesNotContain('\n', err);
        Assert.StartsWith("error: ", err);
        Assert.False(Directory.Exists(Path.Combine(dir, "out", "dtd"))); // nothing half-built is left looking finished
    }

    [Fact]
    public void FgvcCubReleaseBecomesSeededNinetyTenMaps()
    {
        string dir = TestUtil.TempDir(), root = Path.Combine(dir, "CUB_200_2011");
        var images = new List<string>(); var labels = new List<string>(); var split = new List<string>();
        int id = 1;
        for (int c = 1; c <= 3; c++)
            for (int i = 0; i < 12; i++, id++)
            {
                string rel = $"{c:D3}.Bird_{c}/img_{i}.jpg";
                Directory.CreateDirectory(Path.Combine(root, "images", $"{c:D3}.Bird_{c}"));
                File.WriteAllBytes(Path.Combine(root, "images", rel), RgbPng(4, 5, 5, 5));
                images.Add($"{id} {rel}"); labels.Add($"{id} {c}"); split.Add($"{id} {(i < 10 ? 1 : 0)}");
            }
        File.WriteAllLines(Path.Combine(root, "images.txt"), images);
        File.WriteAllLines(Path.Combine(root, "image_class_labels.txt"), labels);
        File.WriteAllLines(Path.Combine(root, "train_test_split.txt"), split);
        var res = FgvcBuilder.Build("cub", dir, Path.Combine(dir, "fgvc"), 0.1, seed: 42);
        Assert.Equal((27, 3, 6, 3), (res.Train, res.Val, res.Test, res.Classes)); // per class: 10 train → 9 + 1 val, 2 test
        var train = FileImageDataset.FromJsonMap(Path.Combine(res.TaskDir, "train.json"));
        var val = FileImageDataset.FromJsonMap(Path.Combine(res.TaskDir, "val.json"), classes: train.Classes);
        Assert.Equal(new[] { 1, 1, 1 }, Enumerable.Range(0, 3).Select(c => Enumerable.Range(0, val.Count).Count(i => val.LabelOf(i) == c)));
        Assert.True(File.Exists(train.NameOf(0)));
        var again = FgvcBuilder.Build("cub", dir, Path.Combine(dir, "fgvc2"), 0.1, seed: 42);
        Assert.Equal(File.ReadAllText(Path.Combine(res.TaskDir, "val.json")), File.ReadAllText(Path.Combine(again.TaskDir, "val.json")));
        // Built maps are never overwritten; the CLI names the flag that picks another place.
        string before = File.ReadAllText(Path.Combine(res.TaskDir, "train.json"));
        var cli = TestUtil.RunCli("data", "fgvc", "--dataset", "cub", "--from", dir, "--out", Path.Combine(dir, "fgvc"), "--seed", "7");
        Assert.Equal(1, cli.ExitCode);
        Assert.Equal($"error: {res.TaskDir}: already holds test.json (built maps are never overwritten); delete it or pass another --out", cli.Stderr.Trim());
        Assert.Equal(before, File.ReadAllText(Path.Combine(res.TaskDir, "train.json")));
    }

    [Fact]
    public void FgvcFlowersKeepsItsOwnValidationAndCarsReadsMatStructs()
    {
        string dir = TestUtil.TempDir(), flowers = Path.Combine(dir, "flowers102");
        Directory.CreateDirectory(Path.Combine(flowers, "jpg"));
        for (int i = 1; i <= 8; i++) File.WriteAllBytes(Path.Combine(flowers, "jpg", $"image_{i:D5}.jpg"), RgbPng(4, 1, 2, 3));
        File.WriteAllBytes(Path.Combine(flowers, "imagelabels.mat"), Mat(true, Doubles("labels", [1, 8], [1, 2, 1, 2, 1, 2, 1, 2])));
        File.WriteAllBytes(Path.Combine(flowers, "setid.mat"), Mat(false, Doubles("trnid", [1, 4], [1, 2, 3, 4]), Doubles("valid", [1, 2], [5, 6]), Doubles("tstid", [1, 2], [7, 8])));
        var f = FgvcBuilder.Build("flowers", dir, Path.Combine(dir, "fgvc"));
        Assert.Equal((4, 2, 2, 2, true), (f.Train, f.Val, f.Test, f.Classes, f.OfficialVal));
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(f.TaskDir, "test.json"))))
            Assert.Equal(new[] { 0, 1 }, doc.RootElement.EnumerateObject().Select(p => p.Value.GetInt32()));

        string cars = Path.Combine(dir, "cars");
        Directory.CreateDirectory(Path.Combine(cars, "car_ims"));
        var paths = Enumerable.Range(1, 6).Select(i => $"car_ims/{i:D6}.jpg").ToArray();
        foreach (var p in paths) File.WriteAllBytes(Path.Combine(cars, p), RgbPng(4, 1, 1, 1));
        var annotations = new MatVar("annotations", 2, [1, 6], 0, [], Fields:
        [
            ("relative_im_path", paths.Select(Chars).ToArray()),
            ("class", Enumerable.Range(0, 6).Select(i => Doubles("", [1, 1], [i % 2 + 1])).ToArray()),
            ("test", Enumerable.Range(0, 6).Select(i => Doubles("", [1, 1], [i >= 4 ? 1 : 0])).ToArray()),
        ]);
        File.WriteAllBytes(Path.Combine(cars, "cars_annos.mat"), Mat(true, annotations));
        var c = FgvcBuilder.Build("cars", cars, Path.Combine(dir, "fgvc"), 0.25, seed: 1);
        Assert.Equal((2, 2, 2, 2), (c.Train, c.Val, c.Test, c.Classes)); // 4 official train, 2 per class → 1 + 1
    }
}
