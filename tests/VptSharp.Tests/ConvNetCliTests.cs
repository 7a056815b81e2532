using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Tuning;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>`vpt` on a backbone that is not a ViT: the real ImageNet ResNet-18 of the NuGet package, end to end.</summary>
public class ConvNetCliTests
{
    [Fact]
    public async Task ResNet18ImageNetTrainEvalPredictServe()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 6);
        string lin = Path.Combine(dir, "lin"), pad = Path.Combine(dir, "pad");
        string[] common = ["train", "--backbone", "resnet18-imagenet", "--data", data, "--val", data, "--batch-size", "6", "--precision", "fp32", "--threads", "2"];

        var train = RunCli([.. common, "--method", "linear", "--epochs", "10", "--warmup-epochs", "1", "--lr", "1", "--out", lin]);
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        Assert.Contains("15,897,152 params", train.Stdout); // the export's ResNet-18 ([2,2,2,3] blocks)

        // The task file records the family, its architecture and the package's folded input normalisation.
        var art = TaskArtifact.Load(Path.Combine(lin, "task.vpt"));
        Assert.Equal("resnet", art.Metadata.Backbone.Family);
        Assert.Null(art.Metadata.Backbone.Config);
        Assert.Equal(new[] { 2, 2, 2, 3 }, art.Metadata.Backbone.Resnet!.Layers);
        Assert.Equal(15_897_152, art.Metadata.Backbone.Parameters);
        Assert.Equal(123.15f / 255, art.Metadata.Preprocessing.Mean[0], 2e-3f); // the mean image's channel mean, not ImageNet's 0.485
        Assert.Equal(ConvNetLoader.ImageNetResNet18Sha256(), art.Metadata.Backbone.Sha256);

        string json = Path.Combine(dir, "eval.json");
        var eval = RunCli("eval", "--task", Path.Combine(lin, "task.vpt"), "--data", data, "--json", json, "--precision", "fp32");
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        using (var doc = JsonDocument.Parse(File.ReadAllText(json)))
        {
            Assert.Equal(18, doc.RootElement.GetProperty("count").GetInt32());
            double top1 = doc.RootElement.GetProperty("top1").GetDouble();
            Assert.True(top1 > 0.6, $"top-1 {top1:P1} on three colour classes (chance 33%)");
        }

        // VPT-pad (paper §4.4), p = 1 around 224 px: 3·(226² − 224²) = 2,700 learnable pixels; one epoch.
        train = RunCli([.. common, "--method", "vpt-pad", "--prompts", "1", "--epochs", "1", "--warmup-epochs", "0", "--out", pad]);
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        Assert.Contains("2,700 method", train.Stdout);

        string img = Path.Combine(data, "class1", "000.png");
        var predict = RunCli("predict", "--task", Path.Combine(pad, "task.vpt"), "--top-k", "2", "--precision", "fp32", img);
        Assert.True(predict.ExitCode == 0, predict.Stderr);
        string predicted;
        double probability;
        using (var pred = JsonDocument.Parse(predict.Stdout))
        {
            var top = pred.RootElement[0].GetProperty("top");
            Assert.Equal(2, top.GetArrayLength());
            predicted = top[0].GetProperty("label").GetString()!;
            probability = top[0].GetProperty("probability").GetDouble();
            Assert.StartsWith("class", predicted);
        }

        // Served together on the one shared ResNet: no one-pass engine (ViT-only), each task its own model; a ViT task (32 px) is refused.
        string tasks = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        File.Copy(Path.Combine(lin, "task.vpt"), Path.Combine(tasks, "lin.vpt"));
        File.Copy(Path.Combine(pad, "task.vpt"), Path.Combine(tasks, "pad.vpt"));
        using (var vit = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 2)))
        using (var m = PromptedModel.Create(vit.Model, new LinearProbeConfig(), 3))
            TaskArtifact.FromModel(m, BackboneRef.Of(vit), ["a", "b", "c"], vit.Preprocessing()).Save(Path.Combine(tasks, "vit.vpt"));
        using var server = new ServeTests.Server("serve", "--backbone", "resnet18-imagenet", "--tasks", tasks, "--port", "0", "--threads", "2");
        using var http = new HttpClient { BaseAddress = server.Url };
        using (var list = JsonDocument.Parse(await http.GetStringAsync("v1/tasks")))
        {
            var served = list.RootElement.GetProperty("tasks").EnumerateArray().ToList();
            Assert.Equal(["lin", "pad"], served.Select(t => t.GetProperty("name").GetString()));
            Assert.All(served, t => Assert.False(t.GetProperty("one_pass").GetBoolean()));
            var rejected = list.RootElement.GetProperty("rejected").EnumerateArray().Single();
            Assert.Equal("vit", rejected.GetProperty("name").GetString());
            Assert.Contains("32-pixel images", rejected.GetProperty("reason").GetString()); // judged before its hash
        }
        var content = new ByteArrayContent(File.ReadAllBytes(img));
        content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        var both = await http.PostAsync("v1/predict?tasks=lin,pad", content);
        Assert.Equal(HttpStatusCode.OK, both.StatusCode);
        using (var doc = JsonDocument.Parse(await both.Content.ReadAsStringAsync()))
        {
            Assert.Equal(["lin", "pad"], doc.RootElement.EnumerateObject().Select(p => p.Name).Order());
            var served = doc.RootElement.GetProperty("pad").GetProperty("top")[0]; // the same answer as `vpt predict` (both fp32)
            Assert.Equal(predicted, served.GetProperty("label").GetString());
            Assert.Equal(probability, served.GetProperty("probability").GetDouble(), 4);
        }
        using (var overview = JsonDocument.Parse(await http.GetStringAsync("v1/overview")))
            Assert.Equal("resnet", overview.RootElement.GetProperty("backbone").GetProperty("architecture").GetProperty("family").GetString());
    }

    /// <summary>A task trained on another backbone: exit 3 and one line naming both, before the ResNet is built.</summary>
    [Fact]
    public void TaskOfAnotherBackboneIsRefusedWithExit3()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 2, 3);
        string bb = SaveTinyBackbone(dir, seed: 1);
        var train = RunCli("train", "--backbone", bb, "--data", data, "--val", data, "--method", "linear", "--epochs", "1", "--batch-size", "6", "--out", Path.Combine(dir, "run"));
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        var eval = RunCli("eval", "--task", Path.Combine(dir, "run", "task.vpt"), "--backbone", "resnet18-imagenet", "--data", data);
        Assert.Equal(3, eval.ExitCode);
        var line = Assert.Single(eval.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("resnet18-imagenet has sha256", line);
        Assert.StartsWith("error: ", line);
    }

    /// <summary>BackboneLoader tells the families apart by their keys: torchvision / timm ResNet and ConvNeXt files load as
    /// such (features equal torchvision's goldens), and a ViT file still loads as a ViT.</summary>
    [Theory]
    [InlineData("resnet_basic.pth", "resnet_basic", 64)]
    [InlineData("resnet_bottleneck_timm.safetensors", "resnet_bottleneck", 64)]
    [InlineData("convnext.pth", "convnext", 32)]
    [InlineData("convnext_timm.safetensors", "convnext", 32)]
    public void LoaderReadsConvNetFilesByTheirKeys(string file, string golden, int image)
    {
        string G(string f) => Golden(Path.Combine("convnets", f));
        using var bb = BackboneLoader.Load(G(file), new ArchOverrides { ImageSize = image });
        Assert.Equal(golden.StartsWith("resnet") ? "resnet" : "convnext", bb.Model.Family);
        Assert.Equal(image, bb.Preprocessing().ImageSize);
        Assert.All(bb.Model.parameters(), p => Assert.False(p.requires_grad));
        using var _ = TorchSharp.torch.no_grad();
        var x = Npy.Read(G($"{golden}_input.npy"));
        using var f = bb.Model.ForwardFeatures(x);
        Assert.True(MaxAbsDiff(bb.Model.ForwardHead(f, preLogits: true), Npy.Read(G($"{golden}_features.npy"))) < 1e-4);
        using var vit = BackboneLoader.Load(SaveTinyBackbone(TempDir()));
        Assert.Equal("vit", vit.Model.Family);
    }

    /// <summary>A sweep searches pad widths (paper: 1..11 pixels) on their own axis, apart from ViT prompt lengths.</summary>
    [Fact]
    public void SweepSearchesPadPixelsOnTheirOwnAxis()
    {
        using var bb = BackboneLoader.Load("random:resnet18:0");
        var task = new Data.SuiteTask { Name = "a", Group = "Natural", Classes = 2, Train = "fractal:2:2", Val = "fractal:2:2", TrainVal = "fractal:2:2", Test = "fractal:2:2" };
        var suite = new Data.Suite { Name = "s", Root = ".", Tasks = [task] };
        var options = new Training.SweepOptions { Methods = ["vpt-pad", "vpt-deep"], Lrs = [1.0], Prompts = [10, 50], PadPixels = [1, 3, 5] };
        var sweep = new Training.Sweep(suite, bb, options, TempDir());
        Assert.Equal([1, 3, 5], sweep.TuneRuns(task, "vpt-pad").Select(r => r.Prompts!.Value));
        Assert.Equal([10, 50], sweep.TuneRuns(task, "vpt-deep").Select(r => r.Prompts!.Value));
        Assert.Equal(3, MethodRegistry.FromOptions("vpt-pad", new MethodOptions { Prompts = 3 }) is PadPromptConfig { Pixels: 3 } ? 3 : 0);
        Assert.Throws<InvalidSettingException>(() => MethodLimits.Check(new PadPromptConfig { Pixels = 100_000 }, bb.Model, 2));

        // --linear-lbfgs: linear runs have no lr axis (one run per L2 value); other SGD methods keep the lr grid.
        var lbfgs = new Training.Sweep(suite, bb, options with { Methods = ["linear", "vpt-pad"], Lrs = [0.5, 0.1], WeightDecays = [0.01, 0.1], LinearLbfgs = true }, TempDir());
        Assert.Equal([0.01, 0.1], lbfgs.TuneRuns(task, "linear").Select(r => r.WeightDecay));
        Assert.Equal(2 * 2 * 3, lbfgs.TuneRuns(task, "vpt-pad").Count());
    }

    /// <summary>Task-file metadata of a family this build does not know, or a ConvNet record without its config, is refused
    /// naming the field.</summary>
    [Fact]
    public void ForeignFamilyOrMissingConvNetConfigIsRefused()
    {
        string dir = TempDir();
        using var bb = BackboneLoader.Load("random:resnet18:3");
        Assert.Equal("resnet", bb.Model.Family);
        using var m = PromptedModel.Create(bb.Model, new PadPromptConfig { Pixels = 1 }, 2);
        var good = TaskArtifact.FromModel(m, BackboneRef.Of(bb), ["a", "b"], bb.Preprocessing());
        string path = Path.Combine(dir, "t.vpt");
        good.Save(path);
        var back = TaskArtifact.Load(path);
        Assert.Equal("resnet", back.Metadata.Backbone.Family);
        Assert.Equal(11_176_512, back.Metadata.Backbone.Parameters); // torchvision resnet18 without fc
        using (var again = back.Attach(bb, path)) Assert.Equal(3L * (226 * 226 - 224 * 224) + 2 * 512 + 2, again.TrainableCount);

        foreach (var (backbone, field) in new[]
        {
            (good.Metadata.Backbone with { Family = "mamba" }, "backbone.family"),
            (good.Metadata.Backbone with { Resnet = null }, "backbone.resnet"),
            (good.Metadata.Backbone with { Family = null }, "backbone.config"), // read as a ViT: its config is missing
        })
        {
            string bad = Path.Combine(dir, "bad.vpt");
            new TaskArtifact(good.Metadata with { Backbone = backbone }, good.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value)).Save(bad);
            var e = Assert.Throws<CheckpointException>(() => TaskArtifact.Load(bad));
            Assert.Contains(field, e.Message);
        }
    }
}
