using TorchSharp;
using VptSharp.IO;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

public class ArtifactTests
{
    [Fact]
    public void TaskFileRoundTripsToIdenticalLogits()
    {
        var dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 3);
        using var bb = BackboneLoader.Load(bbPath);
        manual_seed(5);
        var model = PromptedModel.Create(bb.Model, new PromptConfig { Tokens = 4, Deep = true }, 3);
        model.eval();
        var x = randn(2, 3, 32, 32);
        Tensor expected;
        using (no_grad()) expected = model.forward(x);
        var art = TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["a", "b", "c"], new Preprocessing { ImageSize = 32 },
            new Dictionary<string, double> { ["val_top1"] = 0.5 });
        string task = Path.Combine(dir, "task.vpt");
        art.Save(task);

        var loaded = TaskArtifact.Load(task);
        Assert.Equal(["a", "b", "c"], loaded.Metadata.Classes);
        Assert.Equal("vpt-deep", loaded.Metadata.Method);
        Assert.Equal(0.5, loaded.Metadata.Metrics["val_top1"]);
        Assert.Equal(["head.bias", "head.weight", "method.prompts"], loaded.Tensors.Keys.Order());
        var fresh = loaded.LoadModel(); // loads the backbone the task names, checks its hash
        using (no_grad()) Assert.True(Same(fresh.forward(x), expected));
        // Only prompts + head are stored: 2·4·32 + 3·32 + 3 floats, plus header.
        long payload = (2 * 4 * 32 + 3 * 32 + 3) * 4;
        Assert.InRange(new FileInfo(task).Length, payload, payload + 4096);
    }

    [Fact]
    public void MismatchedBackboneHashIsRefused()
    {
        var dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 3);
        using var bb = BackboneLoader.Load(bbPath);
        var model = PromptedModel.Create(bb.Model, new LinearProbeConfig(), 2);
        var art = TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["x", "y"], new Preprocessing { ImageSize = 32 });
        string task = Path.Combine(dir, "task.vpt");
        art.Save(task);
        var other = Directory.CreateDirectory(Path.Combine(dir, "other")).FullName;
        string otherBb = SaveTinyBackbone(other, seed: 4);
        var e = Assert.Throws<BackboneMismatchException>(() => TaskArtifact.Load(task).LoadModel(otherBb, task));
        Assert.Contains(task, e.Message);
        Assert.Equal("backbone", e.Setting); // the CLI adds "pass --backbone with the original weights" (CliTests)
    }

    [Fact]
    public void VitB16DeepTaskFileIsUnderOnePercentOfBackbone()
    {
        // Task = 12·50·768 prompts + 768·100 head in fp32; ViT-B/16 fp32 weights are 85.8M·4 bytes.
        var vit = new VisionTransformer(VitConfig.Preset("vit-b16"));
        vit.Freeze();
        var model = PromptedModel.Create(vit, new PromptConfig { Tokens = 50, Deep = true }, 100);
        var art = TaskArtifact.FromModel(model, new BackboneRef("random:vit-b16", new string('0', 64), vit.Config),
            Enumerable.Range(0, 100).Select(i => $"c{i}").ToArray(), new Preprocessing());
        var dir = TempDir();
        string task = Path.Combine(dir, "task.vpt");
        art.Save(task);
        double ratio = (double)new FileInfo(task).Length / (vit.BackboneParameterCount * 4);
        Assert.True(ratio < 0.01, $"task file is {100 * ratio:F3}% of the backbone");
        Assert.True(ratio > 0.005); // 0.63%: it really holds the deep prompts
    }

    [Fact]
    public void AtomicWriteLeavesNoPartialFileOnFailure()
    {
        var dir = TempDir();
        string path = Path.Combine(dir, "x.bin");
        File.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s => { s.WriteByte(1); throw new InvalidOperationException("boom"); }));
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(dir));
    }
}
