using VptSharp.Data;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

public class DataTests
{
    [Fact]
    public void ImageFolderListsClassesAndDecodesRgb()
    {
        var root = MakeImageFolder(TempDir(), 3, 4);
        var ds = FileImageDataset.FromFolder(root);
        Assert.Equal(["class0", "class1", "class2"], ds.Classes);
        Assert.Equal(12, ds.Count);
        Assert.Equal([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], ds.Labels());
        var img = ds.Load(0);
        Assert.Equal((32, 32, 32 * 32 * 3), (img.Width, img.Height, img.Pixels.Length));
        // class 0 draws a red square: some pixel is pure red
        Assert.Contains(Enumerable.Range(0, 32 * 32), i => img.Pixels[3 * i] == 255 && img.Pixels[3 * i + 1] == 0 && img.Pixels[3 * i + 2] == 0);
    }

    [Fact]
    public void CorruptImageIsNamedOrSkipped()
    {
        var root = MakeImageFolder(TempDir(), 2, 3);
        string bad = Path.Combine(root, "class1", "zz-corrupt.png");
        File.WriteAllBytes(bad, [0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
        var e = Assert.Throws<BadImageException>(() => FileImageDataset.FromFolder(root).Validate(skipBad: false));
        Assert.Contains("zz-corrupt.png", e.Message);
        Assert.DoesNotContain("--", e.Message); // the library states the fact; the CLI adds --skip-bad (CliTests)
        var ds = FileImageDataset.FromFolder(root);
        Assert.Equal(1, ds.Validate(skipBad: true));
        Assert.Equal(6, ds.Count);
    }

    [Fact]
    public void MissingClassFolderInValidationIsExplained()
    {
        var root = MakeImageFolder(TempDir(), 2, 2);
        var e = Assert.Throws<ArgumentException>(() => FileImageDataset.FromFolder(root, ["class0", "class1", "class7"]));
        Assert.Contains("class7", e.Message);
    }

    [Fact]
    public void ListFileAndJsonMapParse()
    {
        var root = MakeImageFolder(TempDir(), 2, 2);
        File.WriteAllLines(Path.Combine(root, "train800.txt"), ["class0/000.png 0", "class1/001.png 1", "", "class0/001.png 0"]);
        var list = FileImageDataset.FromListFile(Path.Combine(root, "train800.txt"));
        Assert.Equal(3, list.Count);
        Assert.Equal([0, 1, 0], list.Labels());
        Assert.Equal(2, list.Classes.Count);
        Assert.Equal(Path.Combine(root, "class1/001.png"), list.NameOf(1));
        File.WriteAllText(Path.Combine(root, "train.json"), """{"class0/000.png": "bird", "class1/000.png": "ant"}""");
        var map = FileImageDataset.FromJsonMap(Path.Combine(root, "train.json"));
        Assert.Equal(["ant", "bird"], map.Classes);
        Assert.Equal([1, 0], map.Labels());
        File.WriteAllLines(Path.Combine(root, "broken.txt"), ["class0/000.png zero"]);
        var e = Assert.Throws<FormatException>(() => FileImageDataset.FromListFile(Path.Combine(root, "broken.txt")));
        Assert.Contains("broken.txt:1", e.Message);
    }

    [Fact]
    public void SplitIsStratifiedSeededAndDisjoint()
    {
        var ds = new FractalImages(4, 25, seed: 1);
        var (train, val) = ds.SplitTrainVal(0.2, seed: 7);
        Assert.Equal(80, train.Count);
        Assert.Equal(20, val.Count);
        Assert.All(Enumerable.Range(0, 4), c => Assert.Equal(5, val.Labels().Count(l => l == c)));
        var names = Enumerable.Range(0, train.Count).Select(train.NameOf).ToHashSet();
        Assert.DoesNotContain(Enumerable.Range(0, val.Count).Select(val.NameOf), names.Contains);
        var (_, val2) = ds.SplitTrainVal(0.2, seed: 7);
        Assert.Equal(Enumerable.Range(0, 20).Select(val.NameOf), Enumerable.Range(0, 20).Select(val2.NameOf));
    }

    [Fact]
    public void FashionMnistReadsDebianPackage()
    {
        var test = new FashionMnist("test");
        Assert.Equal(10000, test.Count);
        Assert.Equal(10, test.Classes.Count);
        Assert.Equal(1000, test.Labels().Count(l => l == 9));
        var img = test.Load(0);
        Assert.Equal(28, img.Width);
        Assert.Equal(9, test.LabelOf(0)); // the first t10k image is an ankle boot
        var spec = DatasetSpec.Open("fashion-mnist:test[0:100]@5-9");
        Assert.Equal(["sandal", "shirt", "sneaker", "bag", "ankle-boot"], spec.Classes);
        Assert.All(spec.Labels(), l => Assert.InRange(l, 0, 4));
    }

    [Fact]
    public void FractalsAreDeterministicAndClassesDiffer()
    {
        var a = new FractalImages(3, 2, seed: 5);
        var b = new FractalImages(3, 2, seed: 5);
        Assert.Equal(a.Load(3).Pixels, b.Load(3).Pixels);
        Assert.NotEqual(a.Load(0).Pixels, a.Load(2).Pixels);
        Assert.True(a.Load(0).Pixels.Count(p => p > 0) > 50); // not an empty canvas
    }

    [Fact]
    public void TransformNormalisesPerChannel()
    {
        var tf = new ImageTransform(new Preprocessing { ImageSize = 2, Resize = ResizeMode.Plain }, train: false);
        var dst = new float[12];
        tf.Apply(new RgbImage(2, 2, [255, 255, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0]), new Random(0), dst);
        Assert.Equal((1 - 0.485f) / 0.229f, dst[0], 4);
        Assert.Equal(-0.485f / 0.229f, dst[1], 4);
        Assert.Equal(-0.406f / 0.225f, dst[8 + 1], 4);
    }

    /// <summary>A 2047×1 image under crop-flip: only a centred window of 4:1 is resized (148×37 at size 32, not 75,739×37):
    /// the crop equals that of the window itself, and one call allocates no image-sized buffer.</summary>
    [Fact]
    public void ExtremeAspectRatiosAreWindowedBeforeTheResize()
    {
        var px = new byte[2047 * 3];
        for (int x = 0; x < 2047; x++) px[3 * x] = (byte)(37 * x); // a ramp: every column differs from its neighbours
        var img = new RgbImage(2047, 1, px);
        var window = ImageTransform.CentreWindow(img, ImageTransform.MaxAspect);
        Assert.Equal((4, 1), (window.Width, window.Height));
        Assert.Equal(px[(3 * 1021)..(3 * 1025)], window.Pixels); // columns 1021..1024
        Assert.Same(img, ImageTransform.CentreWindow(img, 4096));
        var tall = ImageTransform.CentreWindow(new RgbImage(2, 50, new byte[300]), 4);
        Assert.Equal((2, 8), (tall.Width, tall.Height));

        var tf = new ImageTransform(new Preprocessing { ImageSize = 32, Resize = ResizeMode.CropFlip, Mean = [0, 0, 0], Std = [1, 1, 1] }, train: false);
        var dst = new float[tf.OutputLength];
        tf.Apply(img, new Random(0), dst); // warm-up: SkiaSharp's first call allocates its own tables
        long before = GC.GetAllocatedBytesForCurrentThread();
        tf.Apply(img, new Random(0), dst);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1 << 20, $"{allocated:N0} bytes allocated for one 32 px crop");
        // Resizing the whole ramp would put about one source column across the 32-pixel crop; the window puts four.
        var fromWindow = new float[tf.OutputLength];
        tf.Apply(window, new Random(0), fromWindow);
        Assert.Equal(fromWindow, dst);
    }

    [Fact]
    public void SeedsAreTheSameInEveryProcess()
    {
        // Pinned values: a resumed run in a new process must shuffle and augment exactly as before.
        Assert.Equal(StableSeed.Of(42, 3, 7), StableSeed.Of(42, 3, 7));
        Assert.NotEqual(StableSeed.Of(42, 3, 7), StableSeed.Of(42, 3, 8));
        Assert.Equal(PinnedSeed, StableSeed.Of(1, 2, 3));
        Assert.Equal(PinnedOrder, new BatchLoader(new FractalImages(2, 4, seed: 1), new ImageTransform(new Preprocessing { ImageSize = 32 }, true), 4, true, 5).Order(1));
    }

    const int PinnedSeed = 1695007075;
    static readonly int[] PinnedOrder = [5, 3, 7, 6, 4, 0, 2, 1];

    [Fact]
    public void LoaderIsDeterministicPerEpochAndCoversAll()
    {
        var ds = new FractalImages(2, 10, seed: 3);
        var loader = new BatchLoader(ds, new ImageTransform(new Preprocessing { ImageSize = 32, Resize = ResizeMode.CropFlip }, true), 6, shuffle: true, seed: 1);
        var e1 = loader.Epoch(1).ToList();
        var again = loader.Epoch(1).ToList();
        Assert.Equal(4, e1.Count);
        Assert.Equal(Enumerable.Range(0, 20), e1.SelectMany(b => b.Indices).Order());
        Assert.Equal(e1.SelectMany(b => b.Images), again.SelectMany(b => b.Images));
        Assert.NotEqual(e1[0].Indices, loader.Epoch(2).First().Indices);
    }
}
