using System.Text.Json;
using VptSharp.Checkpoints;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>`vpt demo`, the README's first command: each backbone gets its family's VPT form and its own linear probe.</summary>
public class DemoTests
{
    /// <summary>The embedded ViT (VPT-deep vs an SGD linear probe) and a ConvNet checkpoint (vpt-pad vs an L-BFGS linear head
    /// chosen on val) in one run, as the default pairs the ViT with the ImageNet ResNet-18 (a tiny ResNet stands in for it:
    /// same code path, seconds instead of minutes). Three epochs of VPT and 500 test images: this checks the wiring and that
    /// each run learns, not the recipe's accuracy.</summary>
    [Fact]
    public void DemoRunsEachBackboneWithItsFamilysVptForm()
    {
        string dir = TempDir();
        string resnet = Path.Combine(dir, "tiny-resnet.safetensors");
        using (var net = ConvNetTests.TinyResNet(3))
            SafetensorsFile.Save(resnet, net.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value));
        string outDir = Path.Combine(dir, "demo");
        var run = RunCli("demo", "--backbone", "default," + resnet, "--epochs", "3", "--test-images", "500", "--precision", "fp32", "--threads", "2", "--out", outDir);
        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);

        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "demo.json")));
        var rows = doc.RootElement.GetProperty("results").EnumerateArray()
            .Select(r => (Backbone: r.GetProperty("backbone").GetString(), Method: r.GetProperty("method").GetString(), Trainable: r.GetProperty("trainable").GetInt64(),
                Test: r.GetProperty("test_top1").GetDouble(), Settings: r.GetProperty("settings").GetString()!)).ToList();
        Assert.Equal([("default", "linear"), ("default", "vpt-deep"), (resnet, "linear"), (resnet, "vpt-pad")], rows.Select(r => (r.Backbone, r.Method)));
        // Default ViT (d = 128, 6 blocks, 5 classes): head 645; VPT-deep p = 10 adds 6·10·128 prompt values.
        // Tiny ResNet (d = 32) at its checkpoint's 224 px: head 165; vpt-pad p = 5 adds 3·((224 + 10)² − 224²) pixels.
        Assert.Equal([645L, 645 + 6 * 10 * 128, 165L, 165 + 3L * (234 * 234 - 224 * 224)], rows.Select(r => r.Trainable));
        Assert.Contains("L-BFGS", rows[2].Settings);
        Assert.Contains("TruncNormal", rows[3].Settings); // the ConvNet recipe's short budget starts from a small head
        // The linear heads are solved or trained to the end: well above chance (20%) even on the tiny random ResNet's
        // features. Three epochs of VPT: its training loss falls.
        Assert.All(rows.Where(r => r.Method == "linear"), r => Assert.True(r.Test > 0.4, $"{r.Backbone} linear: test top-1 {r.Test:P1}"));
        foreach (var metrics in new[] { "vpt-deep/metrics.jsonl", "tiny-resnet/vpt-pad/metrics.jsonl" })
        {
            var losses = File.ReadLines(Path.Combine(outDir, metrics)).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("train_loss").GetDouble()).ToList();
            Assert.Equal(3, losses.Count);
            Assert.True(losses[2] < losses[0], $"{metrics}: training loss {string.Join(" → ", losses.Select(l => l.ToString("F3")))}");
        }
        foreach (var file in new[] { "linear/task.vpt", "vpt-deep/task.vpt", "tiny-resnet/linear/task.vpt", "tiny-resnet/vpt-pad/task.vpt" })
            Assert.True(File.Exists(Path.Combine(outDir, file)), file);
        Assert.Contains("vpt-pad vs Linear on test with", run.Stdout);
    }
}
