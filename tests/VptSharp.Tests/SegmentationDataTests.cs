using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using SkiaSharp;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Data.MiniSuite;
using VptSharp.Data.Segmentation;
using VptSharp.Segmentation;
using VptSharp.Training;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Segmentation data (masks, ADE20K and pair folders, SETR augmentation, seg-shapes), training, task files,
/// and `vpt segment` / `POST /v1/tasks/{task}/segment` end to end on tiny configs.</summary>
public class SegmentationDataTests
{
    static void WritePng(string path, int w, int h, Func<int, int, (byte, byte, byte)> color)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var px = new byte[w * h * 3];
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) { var (r, g, b) = color(x, y); int i = 3 * (y * w + x); px[i] = r; px[i + 1] = g; px[i + 2] = b; }
        File.WriteAllBytes(path, MiniSuiteWriter.EncodePng(new RgbImage(w, h, px)));
    }

    static void WriteMask(string path, int w, int h, Func<int, int, byte> label)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var l = new byte[w * h];
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) l[y * w + x] = label(x, y);
        LabelMaskCodec.Save(path, new LabelMask(w, h, l));
    }

    [Fact]
    public void MasksRoundTripAsGrayscalePngAndColourMasksAreRefused()
    {
        string dir = TempDir();
        var mask = new LabelMask(5, 3, [0, 1, 2, 3, 255, 4, 4, 4, 0, 0, 1, 1, 2, 2, 149]);
        string path = Path.Combine(dir, "m.png");
        LabelMaskCodec.Save(path, mask);
        Assert.Equal(mask.Labels, LabelMaskCodec.DecodeFile(path).Labels);
        WritePng(Path.Combine(dir, "gray-rgb.png"), 2, 1, (x, _) => ((byte)(x + 1), (byte)(x + 1), (byte)(x + 1)));
        Assert.Equal([1, 2], LabelMaskCodec.DecodeFile(Path.Combine(dir, "gray-rgb.png")).Labels);
        WritePng(Path.Combine(dir, "colour.png"), 2, 1, (_, _) => (200, 10, 10));
        var e = Assert.Throws<BadImageException>(() => LabelMaskCodec.DecodeFile(Path.Combine(dir, "colour.png")));
        Assert.Contains("colour.png", e.Message);
        Assert.Contains("single-channel", e.Message);
        Assert.Equal((255, 255, 255), LabelMaskCodec.ColorOf(255));
        Assert.Equal(5, Enumerable.Range(1, 5).Select(LabelMaskCodec.ColorOf).Distinct().Count());
    }

    [Fact]
    public void Ade20kLayoutReducesZeroLabelAsMmseg()
    {
        string root = TempDir();
        WritePng(Path.Combine(root, "images", "validation", "ADE_val_1.jpg"), 4, 2, (_, _) => (10, 20, 30));
        // stored 0 (other) → ignore, 1 → class 0 (wall), 150 → class 149 (flag), 255 → ignore
        WriteMask(Path.Combine(root, "annotations", "validation", "ADE_val_1.png"), 4, 2, (x, y) => (byte)new[] { 0, 1, 150, 255, 2, 2, 1, 0 }[y * 4 + x]);
        foreach (var spec in new[] { $"ade20k:{root}:validation", root })
        {
            var ds = SegmentationDataset.Open(spec, spec == root ? "validation" : null);
            Assert.Equal(150, ds.Classes.Count);
            Assert.Equal("flag", ds.Classes[149]);
            Assert.True(ds.ReduceZeroLabel);
            var (img, labels) = ds.Load(0);
            Assert.Equal((4, 2), (img.Width, img.Height));
            Assert.Equal([255, 0, 149, 255, 1, 1, 0, 255], labels.Labels);
        }
        var e = Assert.Throws<InputFileException>(() => SegmentationDataset.Open($"ade20k:{root}:training"));
        Assert.Contains("training", e.Message);
    }

    [Fact]
    public void PairFoldersRefuseMismatchedSizesAndLabelsOutOfRangeInOneLine()
    {
        string dir = TempDir();
        File.WriteAllLines(Path.Combine(dir, "classes.txt"), ["bg", "thing"]);
        WritePng(Path.Combine(dir, "images", "a.png"), 4, 4, (_, _) => (0, 0, 0));
        WriteMask(Path.Combine(dir, "masks", "a.png"), 4, 4, (x, _) => (byte)(x % 2));
        WritePng(Path.Combine(dir, "images", "b.png"), 4, 4, (_, _) => (0, 0, 0));
        WriteMask(Path.Combine(dir, "masks", "b.png"), 3, 4, (_, _) => 0);
        WritePng(Path.Combine(dir, "images", "c.png"), 4, 4, (_, _) => (0, 0, 0));
        WriteMask(Path.Combine(dir, "masks", "c.png"), 4, 4, (x, y) => (byte)(x == 2 && y == 1 ? 7 : 0));
        var ds = SegmentationDataset.Open(dir);
        Assert.False(ds.ReduceZeroLabel);
        Assert.Equal(["bg", "thing"], ds.Classes);
        Assert.Equal([0, 1, 0, 1], ds.Load(0).Mask.Labels[..4]);
        var size = Assert.Throws<InvalidDataException>(() => ds.Load(1));
        Assert.Contains("b.png", size.Message); Assert.Contains("3×4", size.Message); Assert.Contains("4×4", size.Message);
        var range = Assert.Throws<InputFileException>(() => ds.Load(2));
        Assert.Equal("reduce-zero-label", range.Setting); // the CLI adds "if 0 means 'unlabelled' pass --reduce-zero-label"
        Assert.Contains("value 7 at pixel (2, 1)", range.Message); Assert.Contains("2 classes", range.Message);
        Assert.DoesNotContain("\n", range.Message);
        File.Delete(Path.Combine(dir, "masks", "a.png"));
        var missing = Assert.Throws<InputFileException>(() => SegmentationDataset.Open(dir));
        Assert.Contains("a.png", missing.Message);
    }

    [Fact]
    public void SetrAugmentationCropsFlipsAndKeepsLabelsConsistent()
    {
        // Left half label 1 (red), right half label 2 (blue), on a 40×20 image: after any resize/crop/flip each valid
        // pixel's label still matches its colour's side (photometric distortion off, nearest labels vs bilinear pixels).
        var px = new byte[40 * 20 * 3];
        var labels = new byte[40 * 20];
        for (int y = 0; y < 20; y++) for (int x = 0; x < 40; x++) { int i = y * 40 + x; labels[i] = (byte)(x < 20 ? 1 : 2); px[3 * i] = (byte)(x < 20 ? 255 : 0); px[3 * i + 2] = (byte)(x < 20 ? 0 : 255); }
        var aug = new SegmentationAugment(16) { Photometric = false };
        int flips = 0;
        for (int s = 0; s < 20; s++)
        {
            var (img, mask) = aug.Apply(new RgbImage(40, 20, px), new LabelMask(40, 20, labels), new Random(s));
            Assert.Equal((16, 16, 16, 16), (img.Width, img.Height, mask.Width, mask.Height));
            int agree = 0, valid = 0;
            for (int i = 0; i < 256; i++)
            {
                if (mask.Labels[i] == 255) { Assert.Equal(0, img.Pixels[3 * i] + img.Pixels[3 * i + 2]); continue; } // padding
                valid++;
                if ((mask.Labels[i] == 1) == (img.Pixels[3 * i] > img.Pixels[3 * i + 2])) agree++;
            }
            Assert.True(agree >= valid * 0.9, $"seed {s}: {agree}/{valid}");
            // Flipped crops have label 2 (right half) at their left edge.
            if (mask.Labels[0] == 2 && mask.Labels[15] == 1) flips++;
        }
        Assert.True(flips > 0);
        var a1 = aug.Apply(new RgbImage(40, 20, px), new LabelMask(40, 20, labels), new Random(3));
        var a2 = aug.Apply(new RgbImage(40, 20, px), new LabelMask(40, 20, labels), new Random(3));
        Assert.Equal(a1.Mask.Labels, a2.Mask.Labels);
        // Photometric distortion changes pixels, never labels.
        var photo = new SegmentationAugment(16).Apply(new RgbImage(40, 20, px), new LabelMask(40, 20, labels), new Random(3));
        Assert.Equal(a1.Mask.Labels, photo.Mask.Labels);
        // Without random resize and flip, a crop of an image the crop's size is the image itself.
        var none = SegmentationAugment.Named("none", 16).Apply(new RgbImage(40, 20, px), new LabelMask(40, 20, labels), new Random(1));
        Assert.DoesNotContain((byte)255, none.Mask.Labels);
        Assert.Throws<InvalidSettingException>(() => SegmentationAugment.Named("bogus", 16));
    }

    [Fact]
    public void SegShapesIsDeterministicAndLabelsEveryClass()
    {
        var t = new SegShapesTask(seed: 1);
        var (a, ma) = t.Generate(MiniSplit.Train, 5);
        var (b, mb) = new SegShapesTask(seed: 1).Generate(MiniSplit.Train, 5);
        Assert.Equal(a.Pixels, b.Pixels);
        Assert.Equal(ma.Labels, mb.Labels);
        var seen = Enumerable.Range(0, 20).SelectMany(i => t.Generate(MiniSplit.Val, i).Mask.Labels).Distinct().Order().ToArray();
        Assert.Equal([0, 1, 2, 3, 4], seen);
        string dir = SegShapesWriter.Write(TempDir(), 1, new MiniSplitSizes(3, 2, 2));
        var ds = SegmentationDataset.Open(Path.Combine(dir, "val"));
        Assert.Equal(SegShapesTask.Classes, ds.Classes);
        Assert.Equal(2, ds.Count);
        Assert.Equal(t.Generate(MiniSplit.Val, 1).Mask.Labels, ds.Load(1).Mask.Labels);
    }

    /// <summary>Tiny data: a bright square (class 1) on a dark background (class 0), 32×32.</summary>
    static string SquaresFolder(string root, int count, int seed)
    {
        var rng = new Random(seed);
        Directory.CreateDirectory(root);
        File.WriteAllLines(Path.Combine(root, "classes.txt"), ["background", "square"]);
        for (int i = 0; i < count; i++)
        {
            int x0 = rng.Next(2, 16), y0 = rng.Next(2, 16), s = rng.Next(8, 14);
            bool In(int x, int y) => x >= x0 && x < x0 + s && y >= y0 && y < y0 + s;
            WritePng(Path.Combine(root, "images", $"{i}.png"), 32, 32, (x, y) => In(x, y) ? ((byte)230, (byte)220, (byte)40) : ((byte)30, (byte)40, (byte)60));
            WriteMask(Path.Combine(root, "masks", $"{i}.png"), 32, 32, (x, y) => (byte)(In(x, y) ? 1 : 0));
        }
        return root;
    }

    /// <summary>An image whose sliding window would pass the server's memory budget is segmented at the largest size
    /// that fits and its mask scaled back to the image: exactly the downscaled prediction, nearest-neighbour upscaled.</summary>
    [Fact]
    public void ServedSegmentationKeepsTheWindowWithinItsMemoryBudget()
    {
        string dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 5));
        string tasks = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        manual_seed(3);
        using (var model = SegmentationModel.Create(bb.Model, new PromptConfig { Tokens = 2 }, 2, new PupConfig { Channels = 8 }))
            SegmentationArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["bg", "fg"], new Preprocessing { ImageSize = 32 }, reduceZeroLabel: false, stride: 16).Save(Path.Combine(tasks, "seg.vpt"));
        using var store = new VptSharp.Inference.SegmentationStore(bb, tasks) { MaxWindowBytes = 12.0 * 2 * 40 * 40 }; // 2 classes, 40×40 pixels
        store.Rescan();
        var served = store.Tasks["seg"];
        var rng = new Random(7);
        var px = new byte[3 * 80 * 80];
        rng.NextBytes(px);
        var image = new RgbImage(80, 80, px);
        var mask = store.Segment(served, image);
        Assert.Equal((80, 80), (mask.Width, mask.Height));
        var small = SegmentationInference.Predict(served.Model, ImageTransform.Resize(image, 40, 40), served.Artifact.Metadata.Preprocessing, new SlideOptions { Stride = 16 });
        Assert.Equal(small.Resize(80, 80).Labels, mask.Labels);
        // A long thin image keeps its short side padded to the 32-pixel crop: only its long side can shrink the window
        // (200 × 10 → 50 × 2, padded to 50 × 32 = the budget's 1,600 pixels).
        var thin = new RgbImage(200, 10, px[..(3 * 200 * 10)]);
        var thinMask = store.Segment(served, thin);
        Assert.Equal((200, 10), (thinMask.Width, thinMask.Height));
        Assert.Equal(SegmentationInference.Predict(served.Model, ImageTransform.Resize(thin, 50, 2), served.Artifact.Metadata.Preprocessing, new SlideOptions { Stride = 16 })
            .Resize(200, 10).Labels, thinMask.Labels);
        Assert.Equal(0.25, VptSharp.Inference.SegmentationStore.WindowScale(200, 10, 32, 2, store.MaxWindowBytes));
        Assert.Equal(0.5, VptSharp.Inference.SegmentationStore.WindowScale(80, 80, 32, 2, store.MaxWindowBytes));
        Assert.Equal(1.0, VptSharp.Inference.SegmentationStore.WindowScale(40, 40, 32, 2, store.MaxWindowBytes));
        // 2047 × 1 at 150 classes and a 512 crop under 1 GiB: padded to 512 rows, so about 0.57, not the 1 the area alone gives.
        Assert.InRange(VptSharp.Inference.SegmentationStore.WindowScale(2047, 1, 512, 150, 1L << 30), 0.56, 0.58);
        var within = new RgbImage(40, 40, px[..(3 * 40 * 40)]); // at the budget: segmented as it is
        Assert.Equal(SegmentationInference.Predict(served.Model, within, served.Artifact.Metadata.Preprocessing, new SlideOptions { Stride = 16 }).Labels,
            store.Segment(served, within).Labels);

        // A request still holding a task that a rescan replaced runs on the replacement; one whose task is gone is refused.
        manual_seed(4);
        using (var model = SegmentationModel.Create(bb.Model, new PromptConfig { Tokens = 2 }, 2, new PupConfig { Channels = 8 }))
            SegmentationArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["bg", "fg"], new Preprocessing { ImageSize = 32 }, reduceZeroLabel: false, stride: 16).Save(Path.Combine(tasks, "seg.vpt"));
        File.SetLastWriteTimeUtc(Path.Combine(tasks, "seg.vpt"), DateTime.UtcNow.AddMinutes(1)); // a change the rescan sees even within the clock's resolution
        store.Rescan();
        var replacement = store.Tasks["seg"];
        Assert.NotSame(served, replacement);
        Assert.Equal(store.Segment(replacement, within).Labels, store.Segment(served, within).Labels);
        File.Delete(Path.Combine(tasks, "seg.vpt"));
        store.Rescan();
        Assert.Throws<KeyNotFoundException>(() => store.Segment(served, within));
    }

    [Fact]
    public void TrainingLowersTheLossBeatsChanceAndTheTaskFileRoundTrips()
    {
        string dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 5);
        using var bb = BackboneLoader.Load(bbPath);
        var data = SegmentationDataset.Open(SquaresFolder(Path.Combine(dir, "sq"), 16, 1));
        var pre = new Preprocessing { ImageSize = 32 };
        manual_seed(0);
        using var model = SegmentationModel.Create(bb.Model, new PromptConfig { Tokens = 2, Deep = true }, 2, new PupConfig { Channels = 8 });
        var opts = new SegmentationTrainOptions { Epochs = 8, BatchSize = 8, BaseLr = 0.1, OutDir = Path.Combine(dir, "run"), Stride = 16 };
        var res = new SegmentationTrainer(opts).Fit(model, data, data, pre, () => new BackboneRef(bb.Source, bb.Sha256, bb.Config));
        Assert.True(res.Epochs[^1].TrainLoss < res.Epochs[0].TrainLoss * 0.8, string.Join(", ", res.Epochs.Select(e => e.TrainLoss.ToString("F3"))));
        Assert.True(res.BestValMeanIoU > 0.5, $"best val mIoU {res.BestValMeanIoU}"); // chance (all background) ≈ 0.4
        // The task file: decoder (+ BatchNorm statistics) and prompts, no backbone tensor; reloads to identical logits.
        var art = SegmentationArtifact.Load(res.LastPath!);
        Assert.Equal("vpt-deep", art.Metadata.Method);
        Assert.Contains("decoder.stages.0.bn.running_mean", art.Tensors.Keys);
        Assert.DoesNotContain(art.Tensors.Keys, k => k.StartsWith("backbone."));
        using var again = art.Attach(bb, res.LastPath!);
        model.eval();
        using var x = randn(2, 3, 32, 32);
        using (no_grad()) Assert.Equal(0.0, MaxAbsDiff(model.forward(x), again.forward(x)), 6);
        // Another backbone's hash is refused.
        using var other = BackboneLoader.Load(SaveTinyBackbone(Directory.CreateDirectory(Path.Combine(dir, "o")).FullName, seed: 6));
        Assert.Throws<BackboneMismatchException>(() => art.Attach(other, "t.vpt"));
        // A file whose metadata lies about the classes is refused before anything is built.
        var lying = new SegmentationArtifact(art.Metadata with { Classes = ["a", "b", "c"] }, art.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value));
        Assert.Throws<CheckpointException>(() => lying.Attach(bb, "lying.vpt"));
        // So is one whose decoder description asks for far more than it stores (4096 channels: 3.3 GB of weights), and
        // more ×2 stages than the patch needs (patch 8: 3) are refused when a decoder is built.
        var huge = new SegmentationArtifact(art.Metadata with { Decoder = art.Metadata.Decoder with { Channels = 4096 } }, art.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value));
        Assert.Contains("decoder description needs", Assert.Throws<CheckpointException>(() => huge.Attach(bb, "huge.vpt")).Message);
        Assert.Throws<InvalidSettingException>(() => SegmentationModel.Create(bb.Model, new PromptConfig { Tokens = 2 }, 2, new PupConfig { Channels = 8, Stages = 4 }));
        var classification = Path.Combine(dir, "cls.vpt");
        TaskArtifact.FromModel(PromptedModel.Create(bb.Model, new LinearProbeConfig(), 2), new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["a", "b"], pre).Save(classification);
        Assert.Contains("classification task", Assert.Throws<CheckpointException>(() => SegmentationArtifact.Load(classification)).Message);
    }

    [Fact]
    public async Task CliTrainsEvaluatesPredictsAndServesMasks()
    {
        string dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 7);
        string data = SegShapesWriter.Write(dir, 0, new MiniSplitSizes(8, 3, 3));
        string run = Path.Combine(dir, "run");
        var train = RunCli("segment", "train", "--backbone", bbPath, "--data", Path.Combine(data, "train"), "--val", Path.Combine(data, "val"),
            "--method", "head-only", "--epochs", "1", "--batch-size", "4", "--decoder-channels", "8", "--out", run, "--threads", "1");
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Contains("val mIoU", train.Stdout);
        string task = Path.Combine(run, "best.vpt");
        string json = Path.Combine(dir, "eval.json");
        var eval = RunCli("segment", "eval", "--task", task, "--data", Path.Combine(data, "test"), "--scales", "0.75,1", "--flip", "--json", json);
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        using (var doc = JsonDocument.Parse(File.ReadAllText(json)))
        {
            double miou = doc.RootElement.GetProperty("miou").GetDouble();
            Assert.InRange(miou, 0, 1);
            Assert.Equal(5, doc.RootElement.GetProperty("class_iou").GetArrayLength());
        }
        string img = Path.Combine(data, "test", "images", "0000.png");
        var predict = RunCli("segment", "predict", "--task", task, "--out", Path.Combine(dir, "pred"), img);
        Assert.True(predict.ExitCode == 0, predict.Stderr);
        var labels = LabelMaskCodec.DecodeFile(Path.Combine(dir, "pred", "0000.labels.png"));
        Assert.Equal((48, 48), (labels.Width, labels.Height));
        Assert.All(labels.Labels, l => Assert.InRange(l, 0, 4));
        Assert.True(File.Exists(Path.Combine(dir, "pred", "0000.overlay.png")) && File.Exists(Path.Combine(dir, "pred", "0000.mask.png")));
        // Outputs are not replaced without --force; a mask of the wrong size is one line and exit 1.
        var again = RunCli("segment", "predict", "--task", task, "--out", Path.Combine(dir, "pred"), img);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("--force", again.Stderr);
        WriteMask(Path.Combine(data, "test", "masks", "0001.png"), 40, 48, (_, _) => 0);
        var bad = RunCli("segment", "eval", "--task", task, "--data", Path.Combine(data, "test"));
        Assert.Equal(1, bad.ExitCode);
        Assert.Single(bad.Stderr.Trim().Split('\n'));
        Assert.Contains("0001.png", bad.Stderr);
        Assert.Contains("40×48", bad.Stderr);

        // Served: the PNG label mask equals the offline prediction.
        string tasks = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        File.Copy(task, Path.Combine(tasks, "shapes.vpt"));
        using var server = new ServeTests.Server("serve", "--backbone", bbPath, "--tasks", tasks, "--port", "0", "--precision", "fp32", "--threads", "1");
        using var http = new HttpClient { BaseAddress = server.Url };
        var content = new ByteArrayContent(File.ReadAllBytes(img));
        content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        var resp = await http.PostAsync("v1/tasks/shapes/segment", content);
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("image/png", resp.Content.Headers.ContentType?.MediaType);
        Assert.Equal(labels.Labels, LabelMaskCodec.Decode(await resp.Content.ReadAsByteArrayAsync(), "response").Labels);
        var unknown = await http.PostAsync("v1/tasks/nope/segment", new ByteArrayContent(File.ReadAllBytes(img)));
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        var notImage = await http.PostAsync("v1/tasks/shapes/segment", new ByteArrayContent("hello"u8.ToArray()));
        Assert.Equal(HttpStatusCode.BadRequest, notImage.StatusCode);
        Assert.Contains("error", await notImage.Content.ReadAsStringAsync());
        var prom = await http.GetStringAsync("metrics");
        Assert.Contains("task=\"shapes\"", prom);
        // The classification store leaves the segmentation file alone (not listed as rejected).
        using var list = JsonDocument.Parse(await http.GetStringAsync("v1/tasks"));
        Assert.Empty(list.RootElement.GetProperty("rejected").EnumerateArray());
    }
}
