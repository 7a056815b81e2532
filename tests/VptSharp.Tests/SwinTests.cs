using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// Swin v1 against torchvision 0.14 and VPT on Swin against the reference written from the paper's text (goldens from
/// tools/make_swin_goldens.py: a tiny random Swin — patch 4, width 32, depths [2, 2], heads [2, 4], window 4 — with every
/// tensor perturbed), the full-size key layouts (torchvision, timm, official), exact parameter groups and trainable
/// counts per stage, and which of the paper's Table 2 methods apply.
/// </summary>
public class SwinTests
{
    static string G(string name) => Golden(Path.Combine("swin", name));

    static readonly Dictionary<string, string> Layouts = new()
    {
        ["torchvision"] = "swin_tiny.pth", ["timm"] = "swin_tiny_timm.safetensors", ["official"] = "swin_tiny_official.safetensors",
    };

    /// <summary>The golden Swin loaded from one of its layouts (architecture inferred from the tensors), with its classifier.</summary>
    public static SwinTransformer LoadGolden(string layout = "torchvision", int imageSize = 32)
    {
        var m = SwinCheckpointKeys.ToTorchvision(CheckpointReader.Read(G(Layouts[layout])));
        var net = new SwinTransformer(SwinCheckpointKeys.InferConfig(m, imageSize), (int)m["head.weight"].shape[0]);
        net.LoadTorchvision(m, layout);
        net.Freeze();
        return net;
    }

    [Theory]
    [InlineData("torchvision", 32)]
    [InlineData("torchvision", 48)]
    [InlineData("timm", 32)]
    [InlineData("official", 48)]
    public void FeaturesAndLogitsMatchTorchvision(string layout, int image)
    {
        using var net = LoadGolden(layout, image);
        Assert.Equal((32, 4, 4, 4.0, image), (net.Config.EmbedDim, net.Config.Window, net.Config.PatchSize, net.Config.MlpRatio, net.Config.ImageSize));
        Assert.Equal([2, 2], net.Config.Depths);
        Assert.Equal([2, 4], net.Config.Heads);
        var x = Npy.Read(G($"swin_tiny_input{image}.npy"));
        using var _ = no_grad();
        using var f = net.ForwardFeatures(x);
        double features = MaxAbsDiff(net.ForwardHead(f, preLogits: true), Npy.Read(G($"swin_tiny_features{image}.npy")));
        double logits = MaxAbsDiff(net.forward(x), Npy.Read(G($"swin_tiny_logits{image}.npy")));
        Console.WriteLine($"swin tiny ({layout}, {image} px): features max |Δ| {features:E2}, logits {logits:E2}");
        Assert.True(features < 1e-4 && logits < 1e-4, $"features {features}, logits {logits}");
    }

    /// <summary>The shift mask and the relative-position bias matter on these goldens: dropping either moves the output
    /// far beyond the tolerance (so the parity test above can fail).</summary>
    [Fact]
    public void RelativeBiasAndShiftMaskAreLoadBearing()
    {
        using var net = LoadGolden();
        var x = Npy.Read(G("swin_tiny_input32.npy"));
        var golden = Npy.Read(G("swin_tiny_features32.npy"));
        using var _ = no_grad();
        var table = net.named_parameters().First(p => p.name == "features.1.1.attn.relative_position_bias_table").parameter;
        var saved = table.clone();
        table.zero_();
        double noBias = MaxAbsDiff(net.ForwardHead(net.ForwardFeatures(x), preLogits: true), golden);
        table.copy_(saved);
        Assert.True(noBias > 1e-2, $"zeroing one shifted block's bias table changed the features by only {noBias}");
    }

    static List<(string Key, long[] Shape)> KeyList(string file) => File.ReadAllLines(G(file)).Select(l => l.Split(' '))
        .Select(p => (p[0], p.Length > 1 && p[1].Length > 0 ? p[1].Split(',').Select(long.Parse).ToArray() : Array.Empty<long>())).ToList();

    static readonly Lazy<SwinTransformer> SwinT = new(() => new SwinTransformer(SwinConfig.Preset("swin_t"), 1000));

    /// <summary>Every key of torchvision's full-size swin_t and swin_b, and of their timm and official layouts, maps onto
    /// the module built from the preset with the same shape, and the architecture inferred from the shapes is the preset.</summary>
    [Theory]
    [InlineData("swin_t")]
    [InlineData("swin_b")]
    public void FullSizeCheckpointLayoutsMapKeyForKey(string name)
    {
        var preset = SwinConfig.Preset(name);
        foreach (var layout in new[] { "", "_timm", "_official" })
        {
            var keys = KeyList($"{name}{layout}_keys.txt");
            // shapes only: stride-0 views of one element, no weights allocated
            var raw = keys.ToDictionary(k => k.Key, k => zeros(1).expand(k.Shape.Length == 0 ? [] : k.Shape));
            var mapped = SwinCheckpointKeys.ToTorchvision(raw);
            var inferred = SwinCheckpointKeys.InferConfig(mapped);
            Assert.Equal((preset.EmbedDim, preset.Window, preset.PatchSize, preset.MlpRatio), (inferred.EmbedDim, inferred.Window, inferred.PatchSize, inferred.MlpRatio));
            Assert.Equal(preset.Depths, inferred.Depths);
            Assert.Equal(preset.Heads, inferred.Heads);
            if (name != "swin_t") continue; // the module itself is built once, at Swin-T's size
            var ours = SwinT.Value.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
            Assert.Equal(ours.Keys.Order(), mapped.Keys.Order());
            foreach (var (k, t) in mapped) Assert.True(t.shape.SequenceEqual(ours[k]), $"{layout}: {k} [{string.Join(",", t.shape)}] vs [{string.Join(",", ours[k])}]");
            // torchvision's own names: ours plus the derived relative_position_index buffers, which we recompute
            Assert.Equal(KeyList($"{name}_keys.txt").Select(k => k.Key).Where(k => !SwinCheckpointKeys.IsDerivedBuffer(k)).Order(), ours.Keys.Order());
        }
    }

    [Fact]
    public void RelativePositionIndexIsTorchvisions()
    {
        // torchvision's relative_position_index for a 2×2 window (coords (0,0),(0,1),(1,0),(1,1); table side 3)
        Assert.Equal([4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4], WindowAttention.RelativePositionIndex(2));
    }

    /// <summary>Full-size Swin-T: parameter groups and each Table 2 method's trainable count against closed forms
    /// (block of width C with h heads: 12C² + 13C + 169h at window 7; biases 11C per block).</summary>
    [Fact]
    public void SwinTCountsAreExact()
    {
        var net = SwinT.Value;
        net.Freeze();
        long Count(ParameterGroup g, int k = 1) => net.Parameters(g, k).Sum(p => p.Param.numel());
        int[] widths = [96, 192, 384, 768], depths = [2, 2, 6, 2], heads = [3, 6, 12, 24];
        long Block(long c, long h) => 12 * c * c + 13 * c + 169 * h;
        long blocks = Enumerable.Range(0, 4).Sum(s => depths[s] * Block(widths[s], heads[s]));
        long merging = Enumerable.Range(0, 3).Sum(s => 4L * widths[s] * 2 * widths[s] + 2 * 4 * widths[s]);
        long all = 3 * 96 * 16 + 96 + 2 * 96 + blocks + merging + 2 * 768;
        Assert.Equal(28_288_354 - 769_000, all); // torchvision's swin_t has 28,288,354 parameters with its 1000-class head
        Assert.Equal(all, Count(ParameterGroup.All));
        Assert.Equal(96 + 96 + 11L * depths.Zip(widths).Sum(z => (long)z.First * z.Second) + 4L * (96 + 192 + 384) + 768, Count(ParameterGroup.Biases));
        Assert.Equal(Block(768, 24) + 2 * 768, Count(ParameterGroup.LastBlocks, 1)); // partial-1: the last block + final norm
        Assert.Equal(2 * Block(768, 24) + 2 * Block(384, 12) + 4L * 384 * 768 + 8 * 384 + 2 * 768, Count(ParameterGroup.LastBlocks, 4)); // + the merging between
        Assert.Equal(12, net.Depth);

        long Method(MethodConfig c) { using var m = PromptedModel.Create(net, c, 10); return m.MethodCount; }
        long deepPerP = depths.Zip(widths).Sum(z => (long)z.First * z.Second); // Σ_s depth_s · C_s = 4,416
        foreach (int p in new[] { 1, 5, 10, 50 }) // the paper's Swin grid
        {
            Assert.Equal(p * deepPerP, Method(new PromptConfig { Tokens = p, Deep = true }));
            Assert.Equal(p * 96L, Method(new PromptConfig { Tokens = p, Deep = false }));
        }
        Assert.Equal(220_800, Method(new PromptConfig { Tokens = 50, Deep = true })); // per stage 9,600 + 19,200 + 115,200 + 76,800
        using (var m = PromptedModel.Create(net, new PromptConfig { Tokens = 50, Deep = true }, 10))
        {
            var wp = (WindowedPrompts)m.method;
            Assert.Equal([9_600L, 19_200, 115_200, 76_800], Enumerable.Range(0, 4).Select(s => wp.StagePrompts(s)!.numel()));
        }
        Assert.Equal(0, Method(new LinearProbeConfig()));
        Assert.Equal(Block(768, 24) + 2 * 768, Method(new PartialConfig { Blocks = 1 }));
        Assert.Equal(2L * (768 * 768 + 3 * 768), Method(new MlpHeadConfig { Layers = 3 }));
        Assert.Equal(Count(ParameterGroup.Biases), Method(new BiasConfig()));
        Assert.Equal(depths.Zip(widths).Sum(z => z.First * (2L * z.Second * z.Second / 8 + z.Second / 8 + z.Second)), Method(new AdapterConfig { Reduction = 8 }));
        Assert.Equal(all, Method(new FullConfig()));
    }

    static PromptedModel VptModel(SwinTransformer net, bool deep, int p, string tag)
    {
        var model = PromptedModel.Create(net, new PromptConfig { Tokens = p, Deep = deep, Dropout = 0 }, 5);
        var wp = (WindowedPrompts)model.method;
        using (no_grad())
        {
            if (deep)
                for (int s = 0; s < 2; s++) wp.StagePrompts(s)!.copy_(Npy.Read(G($"vpt_deep_p{p}_stage{s}.npy")));
            else
                wp.StagePrompts(0)!.copy_(Npy.Read(G($"vpt_shallow_p{p}_prompts.npy")));
        }
        Assert.Equal(deep ? 2 * p * 32 + 2 * p * 64 : p * 32, model.MethodCount);
        if (!deep) Assert.Null(wp.StagePrompts(1));
        model.eval();
        return model;
    }

    /// <summary>VPT-deep and VPT-shallow on Swin equal the PyTorch reference (prompts in every window, no bias or mask on
    /// them, dropped at patch merging) at p = 3 and p = 1, on 32 px (four windows, shifted masks) and 48 px (padding too).</summary>
    [Theory]
    [InlineData(true, 3)]
    [InlineData(true, 1)]
    [InlineData(false, 3)]
    [InlineData(false, 1)]
    public void VptOnSwinMatchesReference(bool deep, int p)
    {
        using var net = LoadGolden();
        using var model = VptModel(net, deep, p, "");
        string kind = deep ? "deep" : "shallow";
        foreach (int image in new[] { 32, 48 })
        {
            var x = Npy.Read(G($"swin_tiny_input{image}.npy"));
            using var _ = no_grad();
            var golden = Npy.Read(G($"vpt_{kind}_p{p}_features{image}.npy"));
            double d = MaxAbsDiff(model.Features(x), golden);
            double fromPlain = MaxAbsDiff(golden, Npy.Read(G($"swin_tiny_features{image}.npy")));
            Console.WriteLine($"vpt-{kind} p={p} on swin tiny, {image} px: pooled features max |Δ| {d:E2} (prompts move them by {fromPlain:E2})");
            Assert.True(fromPlain > 1e-2, $"the prompts hardly change the reference output ({fromPlain})");
            Assert.True(d < 1e-4, $"{image} px: {d}");
        }
    }

    public static SwinTransformer TinySwin(int seed = 0)
    {
        manual_seed(seed);
        var net = new SwinTransformer(new SwinConfig { EmbedDim = 16, Depths = [2, 2], Heads = [2, 4], Window = 4, ImageSize = 32 });
        net.Freeze();
        return net;
    }

    /// <summary>Table 2's methods on Swin train (loss falls on a repeated batch; exactly the intended backbone tensors change);
    /// every other registered method is refused in one line naming what Swin lacks, and VPT ablations without a meaning
    /// inside windows are refused in one line saying why.</summary>
    [Fact]
    public void Table2MethodsTrainOnSwinAndTheRestAreRefused()
    {
        var refused = new Dictionary<string, string>
        {
            ["cls-learned"] = "a learnable class token", ["vpt-pad"] = "to take images larger than it was built for",
        };
        foreach (var entry in MethodRegistry.All)
        {
            using var net = TinySwin(1);
            var config = entry.FromOptions(new MethodOptions { Prompts = 2, Reduction = 4, SideWidth = 4 });
            if (refused.TryGetValue(entry.Name, out var missing))
            {
                var e = Assert.Throws<UnsupportedMethodException>(() => PromptedModel.Create(net, config, 3));
                Assert.Equal($"method {config.Method} needs {missing}, which the swin backbone does not offer", e.Message);
                continue;
            }
            var before = net.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            using var model = PromptedModel.Create(net, config, 3);
            var opt = optim.SGD(model.TrainableParameters().Select(p => p.Param), 0.01, momentum: 0.9);
            model.train();
            float first = 0, last = 0;
            for (int step = 0; step < 4; step++)
            {
                using var scope = NewDisposeScope();
                var loss = nn.functional.cross_entropy(model.forward(randn(4, 3, 32, 32, generator: new Generator(7))), tensor(new long[] { 0, 1, 2, 0 }));
                opt.zero_grad(); loss.backward(); opt.step();
                if (step == 0) first = loss.item<float>(); else last = loss.item<float>();
            }
            Assert.True(last < first, $"{entry.Name}: loss {first} → {last} did not decrease on a repeated batch");
            var expected = entry.Name switch
            {
                "bias" or "prompt+bias" => net.state_dict().Keys.Where(k => k.EndsWith(".bias")).ToHashSet(),
                "partial-k" => net.state_dict().Keys.Where(k => k.StartsWith("features.3.1.") || k.StartsWith("norm.")).ToHashSet(),
                "full" => net.state_dict().Keys.ToHashSet(),
                _ => [],
            };
            foreach (var (name, t) in net.state_dict())
                Assert.True(expected.Contains(name) != Same(before[name], t), $"{entry.Name}: {name} expected {(expected.Contains(name) ? "trained" : "bit-identical")}");
        }

        using var swin = TinySwin();
        var add = Assert.Throws<UnsupportedMethodException>(() => PromptedModel.Create(swin, new PromptConfig { Location = PromptLocation.Add }, 3));
        Assert.Equal("method vpt-deep needs a token sequence to insert prompt tokens into, which the swin backbone does not offer", add.Message);
        foreach (var bad in new[]
        {
            new PromptConfig { Sharing = PromptSharing.Inter }, new PromptConfig { ProjectDim = 8 },
            new PromptConfig { Output = PromptOutput.PromptPool }, new PromptConfig { Init = PromptInit.ClsPrototype },
        })
        {
            var e = Assert.Throws<InvalidSettingException>(() => PromptedModel.Create(swin, bad, 3));
            Assert.Contains(": not defined for VPT on a swin backbone, whose prompts join its attention windows: ", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    /// <summary>VPT-shallow's prompts live in stage 1 only; VPT-deep with a depth range gives prompts to those blocks only.</summary>
    [Fact]
    public void PromptPlacementFollowsStages()
    {
        using var net = TinySwin();
        using var shallow = PromptedModel.Create(net, new PromptConfig { Tokens = 3, Deep = false }, 3);
        var wp = (WindowedPrompts)shallow.method;
        Assert.Equal((0, 0), wp.PromptedBlocks);
        Assert.Equal([1L, 3, 16], wp.StagePrompts(0)!.shape);
        Assert.Null(wp.StagePrompts(1));
        using var range = PromptedModel.Create(net, new PromptConfig { Tokens = 3, Deep = true, FirstBlock = 2, LastBlock = 3 }, 3);
        var rp = (WindowedPrompts)range.method;
        Assert.Equal([1L, 3, 16], rp.StagePrompts(0)!.shape); // block 2 (stage 1)
        Assert.Equal([1L, 3, 32], rp.StagePrompts(1)!.shape); // block 3 (stage 2)
        Assert.Equal(3 * 16 + 3 * 32, range.MethodCount);
    }
}

/// <summary>`vpt train --backbone SWIN.safetensors` end to end: VPT-deep inside the windows of a tiny Swin, then eval and info.</summary>
public class SwinCliTests
{
    [Fact]
    public void TrainEvalInfoOnATinySwin()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 12);
        string bb = Path.Combine(dir, "tiny-swin.safetensors");
        using (var net = SwinTests.TinySwin(1))
            SafetensorsFile.Save(bb, net.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value),
                new Dictionary<string, string> { ["swin_config"] = System.Text.Json.JsonSerializer.Serialize(net.Config) });
        string run = Path.Combine(dir, "run");
        var train = RunCli("train", "--backbone", bb, "--data", data, "--val-fraction", "0.25", "--method", "vpt-deep", "--prompts", "2",
            "--epochs", "10", "--warmup-epochs", "1", "--batch-size", "8", "--lr", "1", "--precision", "fp32", "--out", run);
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        Assert.Contains($"{2 * (2 * 16 + 2 * 32):N0} method", train.Stdout); // Σ_s depth_s·p·C_s = 2·2·16 + 2·2·32
        string task = Path.Combine(run, "task.vpt");

        string json = Path.Combine(dir, "eval.json");
        var eval = RunCli("eval", "--task", task, "--data", data, "--json", json, "--precision", "fp32");
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
        Assert.Equal(36, doc.RootElement.GetProperty("count").GetInt32());
        double top1 = doc.RootElement.GetProperty("top1").GetDouble();
        Assert.True(top1 > 0.5, $"top-1 {top1:P1} on three colour classes (chance 33%)");

        var info = RunCli("info", task);
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("swin", info.Stdout);
        Assert.Contains("method.stage1", info.Stdout);

        var refused = RunCli("train", "--backbone", bb, "--data", data, "--method", "cls-learned", "--epochs", "1", "--out", Path.Combine(dir, "run2"));
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("needs a learnable class token, which the swin backbone does not offer", refused.Stderr);
        Assert.Single(refused.Stderr.Trim().Split('\n'));
    }
}
