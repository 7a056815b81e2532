using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// A Swin checkpoint loaded at another image size and window (Table 11's Swin-B at 384 px / window 12), against
/// torchvision 0.14 with the official Swin's bicubic table resize (goldens from tools/make_swin_resize_goldens.py; the
/// checkpoint is make_swin_goldens.py's tiny Swin: patch 4, width 32, depths [2, 2], window 4, made for 32 px).
/// </summary>
public class SwinResizeTests
{
    static string G(string name) => Golden(Path.Combine("swin", name));

    static double Features(LoadedBackbone bb, string input, string golden)
    {
        using var _ = no_grad();
        var x = Npy.Read(G(input));
        return MaxAbsDiff(bb.Model.ForwardHead(bb.Model.ForwardFeatures(x), preLogits: true), Npy.Read(G(golden)));
    }

    [Theory]
    [InlineData(6)]
    [InlineData(8)]
    public void ResizedTableIsTheOfficialBicubicResize(int window)
    {
        var table = CheckpointReader.Read(G("swin_tiny.pth"))["features.1.1.attn.relative_position_bias_table"];
        var resized = SwinCheckpointKeys.ResizeRelativePositionTable(table, window);
        Assert.Equal(new long[] { (2 * window - 1) * (2 * window - 1), 2 }, resized.shape);
        double d = MaxAbsDiff(resized, Npy.Read(G($"resize_w{window}_table_features.1.1.npy")));
        Assert.True(d < 1e-5, $"window 4 → {window}: max |Δ| {d}");
        Assert.True(Same(SwinCheckpointKeys.ResizeRelativePositionTable(table, 4), table), "the same window leaves the table as it is");
        var bad = Assert.Throws<CheckpointException>(() => SwinCheckpointKeys.ResizeRelativePositionTable(zeros(50, 2), window));
        Assert.Contains("[50, 2]", bad.Message);
    }

    /// <summary>Window 4 → 6 at 48 px (2×2 shifted windows, then one unshifted window: the shape of Swin-B 384's last
    /// stage) and 4 → 8 at 64 px, through the loader as `--image-size N --window W` reach it.</summary>
    [Theory]
    [InlineData(6, 48, "swin_tiny_input48.npy")]
    [InlineData(8, 64, "resize_input64.npy")]
    public void AnotherWindowMatchesTorchvisionWithResizedTables(int window, int image, string input)
    {
        using var bb = BackboneLoader.Load(G("swin_tiny.pth"), new ArchOverrides { ImageSize = image, Window = window });
        var swin = Assert.IsType<SwinTransformer>(bb.Model);
        Assert.Equal((window, image, 32, 4), (swin.Config.Window, swin.Config.ImageSize, swin.Config.EmbedDim, swin.Config.PatchSize));
        Assert.Equal(image, bb.Preprocessing().ImageSize);
        double d = Features(bb, input, $"resize_w{window}_features{image}.npy");
        Console.WriteLine($"swin tiny window 4 → {window} at {image} px: features max |Δ| {d:E2}");
        Assert.True(d < 1e-4, $"max |Δ| {d}");
        if (image == 48)
        {
            // The window matters at this size: the checkpoint's own window gives other features.
            using var w4 = BackboneLoader.Load(G("swin_tiny.pth"), new ArchOverrides { ImageSize = 48 });
            double other = Features(w4, input, $"resize_w{window}_features{image}.npy");
            Assert.True(other > 1e-2, $"window 4 vs 6 at 48 px differ by only {other}");
        }
    }

    [Fact]
    public void SameWindowAtALargerImage()
    {
        using var bb = BackboneLoader.Load(G("swin_tiny.pth"), new ArchOverrides { ImageSize = 64 });
        var swin = Assert.IsType<SwinTransformer>(bb.Model);
        Assert.Equal((4, 64), (swin.Config.Window, swin.Config.ImageSize));
        double d = Features(bb, "resize_input64.npy", "resize_w4_features64.npy");
        Assert.True(d < 1e-4, $"max |Δ| {d}");
    }

    [Fact]
    public void TimmNamesGiveWindowAndImageSize()
    {
        var b384 = SwinConfig.FromTimmName("swin_base_patch4_window12_384.ms_in22k_ft_in1k")!;
        Assert.Equal((128, 12, 384, 4), (b384.EmbedDim, b384.Window, b384.ImageSize, b384.PatchSize));
        Assert.Equal([2, 2, 18, 2], b384.Depths);
        Assert.Equal([4, 8, 16, 32], b384.Heads);
        Assert.Null(SwinConfig.FromTimmName("vit_base_patch16_384"));
        // A Swin-B made at 224 px / window 7 asked for as timm's 384 model: window 12, 384 px, the same architecture.
        var made = SwinConfig.Preset("swin_b");
        var target = SwinLoader.Target(made, new ArchOverrides { Preset = "swin_base_patch4_window12_384" }, "swin_b.pth");
        Assert.Equal((12, 384), (target.Window, target.ImageSize));
        Assert.Equal(made with { Window = 12, ImageSize = 384 }, target);
        // --image-size and --window override the name; a plain preset keeps the checkpoint's window.
        Assert.Equal((7, 448), (SwinLoader.Target(made, new ArchOverrides { Preset = "swin_base_patch4_window12_384", ImageSize = 448, Window = 7 }, "f").Window,
            SwinLoader.Target(made, new ArchOverrides { Preset = "swin_b", ImageSize = 448 }, "f").ImageSize));
    }

    /// <summary>What cannot be built is refused in one line naming the file and the flag to change, before any model exists.</summary>
    [Fact]
    public void ImpossibleCombinationsAreOneLineErrors()
    {
        string file = G("swin_tiny.pth");
        var cases = new (string[] Args, string[] Says)[]
        {
            (["--image-size", "50"], ["image size 50 is not a whole number of the Swin's 4-pixel patches (e.g. 48 or 52)", "--image-size"]),
            (["--window", "0"], ["window 0 is outside 1..64", "--window"]),
            (["--arch", "swin_base_patch4_window12_384"], ["architecture 'swin_base_patch4_window12_384' does not match the checkpoint's tensors (width 128 vs 32", "--arch"]),
        };
        foreach (var (args, says) in cases)
        {
            var r = RunCli(["info", file, .. args]);
            Assert.True(r.ExitCode != 0, string.Join(' ', args) + ": " + r.Stdout);
            Assert.Single(r.Stderr.Trim().Split('\n'));
            Assert.Contains("swin_tiny.pth", r.Stderr);
            foreach (var s in says) Assert.Contains(s, r.Stderr);
        }
        var vit = RunCli("info", "default", "--window", "7");
        Assert.NotEqual(0, vit.ExitCode);
        Assert.Single(vit.Stderr.Trim().Split('\n'));
        Assert.Contains("the embedded default backbone is not a Swin: an attention window (7) applies only to a Swin backbone; check --window", vit.Stderr);
        var ok = RunCli("info", file, "--image-size", "48", "--window", "6");
        Assert.True(ok.ExitCode == 0, ok.Stderr);
    }

    /// <summary>Absolute position embeddings (timm's ape=True; no released Swin v1 has them) are refused by name, not
    /// reported as an unknown tensor or silently dropped.</summary>
    [Fact]
    public void AbsolutePositionEmbeddingsAreRefusedByName()
    {
        var raw = CheckpointReader.Read(G("swin_tiny_timm.safetensors"));
        raw["absolute_pos_embed"] = zeros(1, 64, 32);
        var e = Assert.Throws<CheckpointException>(() => SwinCheckpointKeys.ToTorchvision(raw));
        Assert.Contains("'absolute_pos_embed': a Swin with absolute position embeddings (ape=True) is not supported", e.Message);
    }

    /// <summary>A task trained on the resized Swin records its window and size, and reloading it rebuilds that model.</summary>
    [Fact]
    public void TaskFilesRebuildTheResizedSwin()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 2, 6, size: 48);
        string run = Path.Combine(dir, "run");
        var train = RunCli("train", "--backbone", G("swin_tiny.pth"), "--image-size", "48", "--window", "6", "--data", data,
            "--val-fraction", "0.25", "--method", "vpt-shallow", "--prompts", "1", "--epochs", "1", "--warmup-epochs", "0",
            "--batch-size", "8", "--precision", "fp32", "--out", run);
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        var task = TaskArtifact.Load(Path.Combine(run, "task.vpt"));
        Assert.Equal((6, 48), (task.Metadata.Backbone.Swin!.Window, task.Metadata.Backbone.Swin.ImageSize));
        using var model = task.LoadModel();
        var swin = Assert.IsType<SwinTransformer>(model.backbone);
        Assert.Equal((6, 48), (swin.Config.Window, swin.Config.ImageSize));
    }
}

/// <summary>`vpt pretrain --family swin`: a Swin from scratch, saved in torchvision's names with its swin_config, loads
/// back as exactly that architecture (how docs/results/swin.md's backbone was made).</summary>
public class SwinPretrainTests
{
    [Fact]
    public void PretrainsATinySwinThatLoadsBack()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 16, size: 16);
        string outDir = Path.Combine(dir, "pt");
        var r = RunCli("pretrain", "--family", "swin", "--data", data, "--val", data, "--width", "16", "--stages", "1,1", "--heads", "1",
            "--window", "2", "--patch", "4", "--image-size", "16", "--epochs", "6", "--warmup-epochs", "0", "--batch-size", "16",
            "--lr", "0.004", "--weight-decay", "0", "--seed", "0", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        using var bb = BackboneLoader.Load(Path.Combine(outDir, "backbone.safetensors"));
        var swin = Assert.IsType<SwinTransformer>(bb.Model);
        Assert.Equal((16, 2, 4, 16), (swin.Config.EmbedDim, swin.Config.Window, swin.Config.PatchSize, swin.Config.ImageSize));
        Assert.Equal([1, 1], swin.Config.Depths);
        Assert.Equal([1, 2], swin.Config.Heads);
        // patch conv 3·16·4² + 16, its norm 2·16; a block of width d, h heads, window w: 12d² + 13d + (2w−1)²·h;
        // merging 2·4·16 + 4·16·32; final norm 2·32.
        static long Block(long d, long h) => 12 * d * d + 13 * d + 9 * h;
        Assert.Equal(3 * 16 * 16 + 16 + 32 + Block(16, 1) + 128 + 2048 + Block(32, 2) + 64, swin.BackboneParameterCount);
        var losses = File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl"))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("train_loss").GetDouble()).ToList();
        Assert.True(losses[^1] < losses[0], $"train loss {string.Join(" → ", losses)}");

        var bad = RunCli("pretrain", "--family", "swin", "--data", data, "--stages", "2,x", "--out", Path.Combine(dir, "bad"));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Single(bad.Stderr.Trim().Split('\n'));
        Assert.Contains("--stages '2,x'", bad.Stderr);
    }
}
